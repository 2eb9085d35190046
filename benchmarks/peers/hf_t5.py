"""The peer a user would otherwise pick for TIGER: Hugging Face `T5ForConditionalGeneration` on PyTorch (on the
GPU when torch sees one, else the CPU: the same machine as the JAX side; see `torch_common`).

Two measurements at a size and batch given by the caller:
  * `train_step_seconds`: one AdamW step (forward + backward + update) with teacher forcing on the target SID tokens;
  * `generate_users_per_second`: `generate` with beam search and `prefix_allowed_tokens_fn` walking a Python trie
    of the catalogue's SID token sequences (the standard way to constrain HF decoding to valid items).
Imported only by benchmark scripts; torch is never a jaxrec dependency.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import transformers

from benchmarks.peers.torch_common import DEVICE, adamw_step_seconds, synchronize, trie_dict


def t5_model(vocab_size: int, d_model: int, num_layers: int, num_heads: int, d_kv: int, d_ff: int,
             dropout: float = 0.1, seed: int = 0) -> transformers.T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = transformers.T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=d_kv, d_ff=d_ff,
                                   num_layers=num_layers, num_decoder_layers=num_layers, num_heads=num_heads,
                                   feed_forward_proj="relu", dropout_rate=dropout, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0, tie_word_embeddings=False)
    return transformers.T5ForConditionalGeneration(config).to(DEVICE)


def train_step_seconds(model: transformers.T5ForConditionalGeneration, history: np.ndarray, target: np.ndarray,
                       steps: int = 10, warmup: int = 2, learning_rate: float = 1e-3) -> float:
    """Median seconds of one AdamW step on `history` [B, L] (0 = pad) -> `target` [B, T] token ids."""
    input_ids = torch.as_tensor(history, dtype=torch.long, device=DEVICE)
    inputs = {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(),
              "labels": torch.as_tensor(target, dtype=torch.long, device=DEVICE)}
    return adamw_step_seconds(model, inputs, steps, warmup, learning_rate)


def generate_users_per_second(model: transformers.T5ForConditionalGeneration, history: np.ndarray,
                              sequences: np.ndarray, beam_width: int, batch_size: int = 64) -> dict[str, float]:
    """Constrained beam search for every row of `history` [U, L]; returns users/s and the invalid-beam rate."""
    model.eval()
    allowed = trie_dict(sequences)
    depth = sequences.shape[1]
    valid = {tuple(row) for row in sequences.tolist()}

    def prefix_allowed_tokens(batch_id: int, decoded: torch.Tensor) -> list[int]:
        return allowed.get(tuple(decoded.tolist()[1:]), [0])  # drop the decoder start token

    with torch.no_grad():  # warm-up: the first generate call pays one-off set-up costs
        warm = torch.as_tensor(history[:2], dtype=torch.long, device=DEVICE)
        model.generate(input_ids=warm, attention_mask=(warm != 0).long(), num_beams=beam_width,
                       num_return_sequences=beam_width, max_new_tokens=depth, min_new_tokens=depth, do_sample=False,
                       early_stopping=False, prefix_allowed_tokens_fn=prefix_allowed_tokens)
    invalid = total = 0
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(history), batch_size):
            input_ids = torch.as_tensor(history[start:start + batch_size], dtype=torch.long, device=DEVICE)
            out = model.generate(input_ids=input_ids, attention_mask=(input_ids != 0).long(), num_beams=beam_width,
                                 num_return_sequences=beam_width, max_new_tokens=depth, min_new_tokens=depth,
                                 do_sample=False, early_stopping=False, prefix_allowed_tokens_fn=prefix_allowed_tokens)
            generated = out[:, 1:1 + depth].tolist()
            invalid += sum(tuple(row) not in valid for row in generated)
            total += len(generated)
    synchronize()
    seconds = time.perf_counter() - started
    return {"users": len(history), "seconds": seconds, "users_per_second": len(history) / seconds,
            "invalid_beam_rate": invalid / max(total, 1)}
