"""LLM-as-RS speed on Beauty, one run on one machine: our train step vs Hugging Face `Qwen3ForCausalLM` (PyTorch)
at the same small shape, batch and rows, and title-constrained beam search over Beauty's 12,101 titles (beam 20) vs
`generate` with `prefix_allowed_tokens_fn` over the same titles.

    python -m benchmarks.llm_speed [--data ../shared/data/amazon-beauty-2014] [--users 512] [--hf-users 64]

Same model on both sides: a Qwen3 shape (hidden 256, intermediate 768, 4 layers, 8 query / 4 key-value heads of
32, tied embeddings) with the vocabulary of a 4,096-token byte-level BPE trained on the Beauty titles; the HF model
is created with random weights, saved, and loaded by ours (`mode="full"`), so both start from the same weights.
Rows: prompt (the user's titles, most recent last, within 256 tokens) + next title + EOS, left-padded to 305
columns, batch 16, the loss on the title tokens only (HF: labels -100 elsewhere); AdamW on both; medians of
individually timed steps after warm-up. Beam search: ours on the first `--users` test users (compilation excluded:
timed on a second pass), HF on the first `--hf-users` (after a warm-up call), users/s each. Targets (LLM-as-RS
issue, 2-core CPU): train step >= 1.3x, title beam search >= 5x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.record import record
from benchmarks.timing import train_step_times

ROOT = Path(__file__).resolve().parent.parent
SHAPE = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=4, head_dim=32)
PROMPT = {"max_prompt_tokens": 256, "max_title_tokens": 48}
BATCH = 16


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty-2014"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--users", type=int, default=512)
    parser.add_argument("--hf-users", type=int, default=64)
    args = parser.parse_args()

    import torch
    import transformers

    from benchmarks.peers import hf_qwen
    from jaxrec.data.p5 import read_p5
    from jaxrec.data.splits import leave_one_out
    from jaxrec.models import llm_rs, qwen
    from jaxrec.text.item_text import item_texts
    from jaxrec.text.tokenizer import train_tokenizer
    from jaxrec.train.defaults import train_config
    from jaxrec.train.trainer import Trainer

    torch.set_num_threads(os.cpu_count() or 1)
    split = leave_one_out(read_p5(args.data))
    catalog = split.dataset.catalog
    results: dict = {"threads": os.cpu_count(), "shape": SHAPE, "prompt": PROMPT, "batch": BATCH}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "model"
        texts, _ = item_texts(catalog, ("{title}",), ". ", "raw_id")
        tokenizer = train_tokenizer(texts, 4096, checkpoint)
        torch.manual_seed(0)
        peer = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
            vocab_size=len(tokenizer), tie_word_embeddings=True, rope_theta=1e6, attn_implementation="sdpa",
            max_position_embeddings=512, **SHAPE))
        peer.save_pretrained(checkpoint)
        peer = peer.to(hf_qwen.DEVICE)
        config = llm_rs.LLMRSConfig(mode="full", checkpoint=str(checkpoint), prompt=PROMPT, max_history=20,
                                    beam_width=20)
        parts = llm_rs.LLMRSFamily(config, catalog, Path(tmp) / "run")
        family = parts.model_family()
        results["parameters"] = qwen.count_parameters(parts.model_config)
        results["titles"] = len(parts.titles.sequences)

        # Train step: the same rows on both sides.
        histories, targets, _ = split.training_examples(20)
        rows = parts.prompts.training_rows(histories[:BATCH * (args.steps + 3)], targets[:BATCH * (args.steps + 3)])
        trainer = Trainer(family, train_config(batch_size=BATCH, num_steps=args.steps + 3, progress=False,
                                               tensorboard=False, async_checkpointing=False), Path(tmp) / "run")
        state = trainer.init_state(args.steps + 3)
        host_batches = [{k: v[index * BATCH:(index + 1) * BATCH] for k, v in rows.items()}
                        for index in range(args.steps + 3)]
        times, state = train_step_times(trainer, state, host_batches, warmup=3)
        results["ours/train_step_median_s"] = statistics.median(times)
        results["row_length"] = int(rows["tokens"].shape[1])
        first = {k: v[:BATCH] for k, v in rows.items()}
        results["hf/train_step_median_s"] = hf_qwen.train_step_seconds(
            peer, first["tokens"], first["mask"], first["target_mask"], steps=args.steps)

        # Title beam search from the same (trained a few steps: ours; initial: HF) -- speed only, so each side
        # decodes with its own weights; the shapes and the work are the same.
        recommender = trainer.recommender(state.params)
        test_histories = split.histories("test", 20)
        users = test_histories[:args.users]
        recommender.recommend(users, 20)  # compile every shape
        started = time.perf_counter()
        ranked = recommender.recommend(users, 20)
        seconds = time.perf_counter() - started
        results["ours/beam_users"] = len(users)
        results["ours/beam_users_per_s"] = len(users) / seconds
        results["ours/invalid_rate"] = float(np.mean(ranked < 1))
        prompts = [parts.prompts.prompt(history) for history in test_histories[:args.hf_users]]
        generated = hf_qwen.generate_users_per_second(peer, prompts, parts.titles.sequences, beam_width=20,
                                                      pad=parts.prompts.pad)
        results["hf/beam_users"] = generated["users"]
        results["hf/beam_users_per_s"] = generated["users_per_second"]
        results["hf/invalid_beam_rate"] = generated["invalid_beam_rate"]
    results["torch_version"] = torch.__version__
    results["torch_device"] = str(hf_qwen.DEVICE)
    results["speedup/train_step"] = results["hf/train_step_median_s"] / results["ours/train_step_median_s"]
    results["speedup/beam_users_per_s"] = results["ours/beam_users_per_s"] / results["hf/beam_users_per_s"]
    record("llm_speed", results, command=f"python -m benchmarks.llm_speed --data {args.data} --users {args.users} "
                                         f"--hf-users {args.hf_users}")


if __name__ == "__main__":
    main()
