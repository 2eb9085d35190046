"""The peer a user would otherwise pick for LLM-as-RS: Hugging Face `Qwen3ForCausalLM` on PyTorch (the GPU when
torch sees one, else the CPU).

  * `train_step_seconds`: one AdamW step on left-padded prompt + title rows, the loss on the title tokens only
    (labels -100 elsewhere: the standard way to train a causal LM on answers);
  * `generate_users_per_second`: `generate` with beam search and `prefix_allowed_tokens_fn` walking a Python trie of
    the catalogue's title sequences (each ending in EOS).
Imported only by benchmark scripts; torch is never a jaxrec dependency.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import transformers

from benchmarks.peers.torch_common import DEVICE, adamw_step_seconds, synchronize, trie_dict


def train_step_seconds(model: transformers.Qwen3ForCausalLM, tokens: np.ndarray, mask: np.ndarray,
                       target_mask: np.ndarray, steps: int = 10, warmup: int = 2, learning_rate: float = 1e-3) -> float:
    """Median seconds of one AdamW step on rows [B, L] (left-padded; `target_mask` marks the title tokens)."""
    input_ids = torch.as_tensor(tokens, dtype=torch.long, device=DEVICE)
    inputs = {"input_ids": input_ids, "attention_mask": torch.as_tensor(mask, dtype=torch.long, device=DEVICE),
              "labels": torch.where(torch.as_tensor(target_mask, device=DEVICE) == 1, input_ids, -100)}
    return adamw_step_seconds(model, inputs, steps, warmup, learning_rate)


def generate_users_per_second(model: transformers.Qwen3ForCausalLM, prompts: list[list[int]],
                              titles: list[list[int]], beam_width: int, pad: int, batch_size: int = 16
                              ) -> dict[str, float]:
    """Title-constrained beam search for every prompt (each ending in the start token); users/s and the rate of
    returned beams that are not a catalogue title."""
    model.eval()
    allowed = trie_dict(titles)
    valid = {tuple(title) for title in titles}
    depth = max(len(title) for title in titles)
    eos = titles[0][-1]

    def batch_inputs(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, width - len(row):], mask[index, width - len(row):] = torch.tensor(row), 1
        return ids.to(DEVICE), mask.to(DEVICE)

    def run(rows: list[list[int]]) -> list[tuple[int, ...]]:
        ids, mask = batch_inputs(rows)
        start = ids.shape[1]

        def prefix_allowed_tokens(batch_id: int, decoded: torch.Tensor) -> list[int]:
            prefix = tuple(decoded[start:].tolist())
            if prefix and prefix[-1] == eos:
                return [eos]  # a finished title (padding continues with EOS)
            return allowed.get(prefix, [eos])

        out = model.generate(input_ids=ids, attention_mask=mask, num_beams=beam_width,
                             num_return_sequences=beam_width, max_new_tokens=depth, do_sample=False,
                             early_stopping=True, eos_token_id=eos, pad_token_id=pad,
                             prefix_allowed_tokens_fn=prefix_allowed_tokens)
        results = []
        for row in out[:, start:].tolist():
            title = row[:row.index(eos) + 1] if eos in row else row
            results.append(tuple(title))
        return results

    with torch.no_grad():
        run(prompts[:2])  # warm-up: one-off set-up costs
        started = time.perf_counter()
        generated = []
        for begin in range(0, len(prompts), batch_size):
            generated += run(prompts[begin:begin + batch_size])
        synchronize()
        seconds = time.perf_counter() - started
    invalid = sum(title not in valid for title in generated)
    return {"users": len(prompts), "seconds": seconds, "users_per_second": len(prompts) / seconds,
            "invalid_beam_rate": invalid / max(len(generated), 1)}
