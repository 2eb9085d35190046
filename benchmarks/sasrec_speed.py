"""SASRec speed on Beauty: our train step vs RecBole's, trainer overhead, full test evaluation — one run.

    python -m benchmarks.sasrec_speed [--data ../shared/data/amazon-beauty-2014] [--recbole-python /work/bench-venv/bin/python]

Same sizes as RecBole's run (hidden 64, 2 layers, 2 heads, inner 256, dropout 0.5, max length 50, batch [256, 50]) and
the same objective: every training prefix is a row and the full-softmax CE is taken at its last position
(`loss_positions="last"`, RecBole's SASRec CE). Step times are medians over individually timed steps after warm-up
(`block_until_ready`), data loading excluded on both sides. The RecBole side runs in its own environment
(benchmarks/peers/setup_recbole_env.sh: torch 2.13.0 CPU, recbole 1.2.1) right after ours, with the same thread count.

Trainer overhead: the same jitted step driven (a) by a bare loop over batches already on device and (b) by
`Trainer.fit` (grain iterator, host->device transfer, progress bar, metric logging); (b)'s rate is read from its own
examples/s log windows after the first (which holds compilation).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import jax

from benchmarks.record import record
from benchmarks.timing import train_step_times

ROOT = Path(__file__).resolve().parent.parent
SIZES = dict(max_length=50, hidden=64, num_layers=2, num_heads=2, ffn_hidden=256, dropout=0.5,
             attention_dropout=0.5, loss="ce")


def trainer_for(split, workdir: Path, loss_positions: str, num_steps: int, batch_size: int = 256):
    from jaxrec.models import sasrec
    from jaxrec.train.defaults import train_config
    from jaxrec.train.trainer import Trainer

    config = train_config(batch_size=batch_size, num_steps=num_steps, eval_every_steps=num_steps, log_every_steps=25,
                          eval_batch_size=4096, progress=False, tensorboard=False, async_checkpointing=False)
    model = sasrec.SASRecConfig(num_items=split.dataset.num_items, loss_positions=loss_positions, **SIZES)
    return Trainer(sasrec.family(model), config, workdir)


def step_times(trainer, split, steps: int, warmup: int = 5) -> tuple[list[float], tuple[int, ...], object]:
    from jaxrec.data.pipeline import example_batches

    state = trainer.init_state(steps + warmup)
    columns = trainer.family.training_columns(split)
    iterator = iter(example_batches(columns, batch_size=trainer.config.batch_size, seed=0, num_epochs=None))
    batches = [next(iterator) for _ in range(steps + warmup)]
    times, state = train_step_times(trainer, state, batches, warmup)
    return times, tuple(batches[0]["sequence"].shape), state


def bare_rate(trainer, split, steps: int) -> float:
    """Examples/s of the jitted step over on-device batches, no trainer around it (compiled beforehand)."""
    from jaxrec.data.pipeline import example_batches
    from jaxrec.train.mesh import shard_batch

    state = trainer.init_state(steps)
    columns = trainer.family.training_columns(split)
    iterator = iter(example_batches(columns, batch_size=trainer.config.batch_size, seed=0, num_epochs=None))
    batches = [shard_batch(next(iterator), trainer.mesh) for _ in range(steps)]
    state, _ = trainer.train_step(state, batches[0])
    jax.block_until_ready(state)
    started = time.perf_counter()
    for batch in batches[1:]:
        state, metrics = trainer.train_step(state, batch)
    jax.block_until_ready((state, metrics))
    return (steps - 1) * trainer.config.batch_size / (time.perf_counter() - started)


def trainer_rate(split, workdir: Path, steps: int) -> float:
    trainer = trainer_for(split, workdir, "last", steps)
    trainer.fit(split)
    windows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    rates = [w["train/examples_per_s"] for w in windows if "train/examples_per_s" in w][1:]  # skip compile window
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty-2014"))
    parser.add_argument("--recbole-python", default="/work/bench-venv/bin/python")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--overhead-steps", type=int, default=150)
    args = parser.parse_args()

    from jaxrec.data.p5 import read_p5
    from jaxrec.data.splits import leave_one_out
    from jaxrec.eval.evaluator import evaluate

    split = leave_one_out(read_p5(args.data))
    results: dict = {"threads": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trainer = trainer_for(split, tmp / "last", "last", args.steps)
        times, shape, state = step_times(trainer, split, args.steps)
        results["ours/train_step_median_s"] = statistics.median(times)
        results["ours/train_step_mean_s"] = statistics.mean(times)
        results["ours/batch_shape"] = list(shape)

        recommender = trainer.recommender(state.params)
        evaluate(recommender, split, "test")  # compile
        eval_times = []
        for _ in range(3):
            started = time.perf_counter()
            evaluate(recommender, split, "test")
            eval_times.append(time.perf_counter() - started)
        results["ours/full_test_eval_s"] = statistics.median(eval_times)
        results["eval_users"] = split.num_users

        all_positions = trainer_for(split, tmp / "all", "all", args.steps)
        times, shape, _ = step_times(all_positions, split, args.steps)
        results["ours_all_positions/train_step_median_s"] = statistics.median(times)
        results["ours_all_positions/batch_shape"] = list(shape)

        results["overhead/bare_examples_per_s"] = bare_rate(trainer_for(split, tmp / "bare", "last", 10), split,
                                                            args.overhead_steps)
        results["overhead/trainer_examples_per_s"] = trainer_rate(split, tmp / "fit", args.overhead_steps)
        results["overhead/trainer_over_bare"] = (results["overhead/bare_examples_per_s"]
                                                 / results["overhead/trainer_examples_per_s"] - 1.0)

        peer_out = tmp / "recbole.json"
        peer = subprocess.run([args.recbole_python, "benchmarks/peers/recbole_sasrec.py", "--data", args.data,
                               "--out", str(peer_out), "--steps", str(args.steps), "--threads", str(os.cpu_count())],
                              cwd=ROOT, capture_output=True, text=True)
        if peer.returncode != 0:
            raise SystemExit(f"RecBole peer failed:\n{peer.stderr[-3000:]}")
        recbole = json.loads(peer_out.read_text())
    results["recbole/train_step_median_s"] = recbole["train_step_median_s"]
    results["recbole/full_sort_eval_s"] = recbole["full_sort_eval_s"]
    results["recbole/batch_shape"] = recbole["batch_shape"]
    results["recbole/version"] = recbole.get("recbole_version")
    results["recbole/torch_version"] = recbole.get("torch_version")
    results["speedup/train_step"] = results["recbole/train_step_median_s"] / results["ours/train_step_median_s"]
    results["speedup/full_test_eval"] = results["recbole/full_sort_eval_s"] / results["ours/full_test_eval_s"]
    record("sasrec_speed", results, command="python -m benchmarks.sasrec_speed --data " + args.data)


if __name__ == "__main__":
    main()
