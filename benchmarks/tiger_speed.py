"""TIGER speed on Beauty, one run: our train step vs Hugging Face `T5ForConditionalGeneration` (PyTorch 2.13.0) at
the same size and batch, and the full constrained test evaluation vs `generate` with `prefix_allowed_tokens_fn`.

    python -m benchmarks.tiger_speed [--data ../shared/data/amazon-beauty-2014] [--sid-workdir runs/bench_sid_beauty]

Same model on both sides: the 13M shape of Table 2 (4 + 4 layers, d_model 128, 6 heads of 64, d_ff 1024, ReLU, one
hidden feed-forward layer as in T5, dropout 0.1), the Beauty SID vocabulary, histories of 20 items (80 tokens),
batch 256, AdamW. Differences that remain: ours scores each target token with its level's head, HF with one LM
head over the whole SID vocabulary (slightly more head compute on the HF side). Step times are medians of
individually timed steps after warm-up, data loading excluded. Evaluation: ours runs every one of the 22,363 test
users (beam 20, jitted end to end, compilation excluded); HF `generate` (beam 20, 20 sequences, 4 new tokens,
constrained by a Python prefix trie) runs on the first `--hf-users` users (1,024 by default, after a warm-up
call) and is reported as users/s. The SID
table comes from `jaxrec sid --config configs/sid_beauty.py` (built into --sid-workdir if absent). Targets (TIGER
issue): train step >= 2x, evaluation >= 5x.
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
SIZE = dict(num_layers=4, d_model=128, num_heads=6, d_kv=64, d_ff=1024, feed_forward_proj="relu", mlp_layers=1,
            dropout=0.1, max_history=20, beam_width=20)


def sid_table(data: str, workdir: Path):
    from jaxrec.config import load_config
    from jaxrec.data.p5 import read_p5
    from jaxrec.sid.build import TABLE_FILE, build_sid
    from jaxrec.sid.table import SIDTable

    if (workdir / TABLE_FILE).exists():
        return SIDTable.load(workdir / TABLE_FILE)
    config = load_config(str(ROOT / "configs" / "sid_beauty.py"))
    return build_sid(config.sid, read_p5(data).catalog, workdir)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty-2014"))
    parser.add_argument("--sid-workdir", default=str(ROOT / "runs" / "bench_sid_beauty"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hf-users", type=int, default=1024)
    parser.add_argument("--name", default="tiger_speed", help="results/<name>.json (e.g. tiger_speed_h100)")
    args = parser.parse_args()

    import torch

    from benchmarks.peers import hf_t5
    from jaxrec.data.p5 import read_p5
    from jaxrec.data.pipeline import example_batches
    from jaxrec.data.splits import leave_one_out
    from jaxrec.eval.evaluator import evaluate
    from jaxrec.models import tiger
    from jaxrec.train.defaults import train_config
    from jaxrec.train.trainer import Trainer

    split = leave_one_out(read_p5(args.data))
    table = sid_table(args.data, Path(args.sid_workdir))
    model_config = tiger.TIGERConfig(level_sizes=table.level_sizes, **SIZE)
    family = tiger.family(model_config, table, split)
    results: dict = {"threads": os.cpu_count(), "parameters": tiger.count_parameters(model_config)}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(family, train_config(batch_size=256, num_steps=args.steps + 5, progress=False,
                                               tensorboard=False, async_checkpointing=False), tmp)
        state = trainer.init_state(args.steps + 5)
        columns = family.training_columns(split)
        iterator = iter(example_batches(columns, batch_size=256, seed=0, num_epochs=None))
        host_batches = [next(iterator) for _ in range(args.steps + 5)]
        times, state = train_step_times(trainer, state, host_batches, warmup=5)
        results["ours/train_step_median_s"] = statistics.median(times)
        results["ours/batch_history_shape"] = list(host_batches[0]["history"].shape)

        recommender = trainer.recommender(state.params)
        users = np.arange(min(1024, split.num_users))
        evaluate(recommender, split, "test", max_history=20, users=users)  # compile
        started = time.perf_counter()
        metrics = evaluate(recommender, split, "test", max_history=20)
        results["ours/full_test_eval_s"] = time.perf_counter() - started
        results["ours/eval_users_per_s"] = split.num_users / results["ours/full_test_eval_s"]
        results["ours/invalid_rate@10"] = metrics.get("invalid_rate@10")
        results["eval_users"] = split.num_users

    # The HF peer on the same tokens.
    torch.set_num_threads(os.cpu_count() or 1)
    layout = model_config.layout
    token_rows = layout.item_token_table(table.codes)
    history_items = np.stack([b["history"] for b in host_batches[:1]])[0]
    history_tokens, _ = layout.history_tokens(token_rows, history_items)
    target_tokens = token_rows[host_batches[0]["target"]]
    peer = hf_t5.t5_model(layout.vocab_size, SIZE["d_model"], SIZE["num_layers"], SIZE["num_heads"], SIZE["d_kv"],
                          SIZE["d_ff"], SIZE["dropout"])
    results["hf/parameters"] = sum(p.numel() for p in peer.parameters())
    results["hf/train_step_median_s"] = hf_t5.train_step_seconds(peer, np.asarray(history_tokens),
                                                                 np.asarray(target_tokens), steps=args.steps)
    test_histories = split.histories("test", 20)[:args.hf_users]
    test_tokens, _ = layout.history_tokens(token_rows, test_histories)
    generated = hf_t5.generate_users_per_second(peer, np.asarray(test_tokens), token_rows[1:], beam_width=20)
    results["hf/eval_users"] = generated["users"]
    results["hf/eval_users_per_s"] = generated["users_per_second"]
    results["hf/invalid_beam_rate"] = generated["invalid_beam_rate"]
    results["torch_version"] = torch.__version__
    results["torch_device"] = str(hf_t5.DEVICE)
    results["speedup/train_step"] = results["hf/train_step_median_s"] / results["ours/train_step_median_s"]
    results["speedup/eval_users_per_s"] = results["ours/eval_users_per_s"] / results["hf/eval_users_per_s"]
    record(args.name, results, command=f"python -m benchmarks.tiger_speed --data {args.data} --name {args.name}")


if __name__ == "__main__":
    main()
