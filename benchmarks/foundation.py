"""Foundation benchmark (issue 2): data loading + split, evaluator, import time, the README's main job.

    python -m benchmarks.foundation [--data ../shared/data/amazon-beauty-2014]

Peers, in the same run: the evaluator against the per-user Python loop most research code uses
(list.index over each recommendation list), and loading against a plain-Python parse of the same files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.record import record

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def load_and_split(folder: Path):
    from jaxrec.data.p5 import read_p5
    from jaxrec.data.splits import leave_one_out

    split = leave_one_out(read_p5(folder))
    split.training_examples(50)
    return split


def python_loop_metrics(ranked: np.ndarray, targets: np.ndarray, k: int) -> tuple[float, float]:
    """The common research-code evaluator: a Python loop over users."""
    recall = ndcg = 0.0
    for row, target in zip(ranked.tolist(), targets.tolist()):
        top = row[:k]
        if target in top:
            rank = top.index(target)
            recall += 1.0
            ndcg += 1.0 / np.log2(rank + 2)
    return recall / len(targets), ndcg / len(targets)


def python_load(folder: Path) -> int:
    """Plain-Python parse of the same files into lists (what a script would do), plus the split."""
    sequences = [list(map(int, line.split()[1:])) for line in (folder / "sequences.txt").read_text().splitlines()]
    items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    examples = [(seq[max(0, j - 50):j], seq[j]) for seq in sequences for j in range(1, len(seq) - 2)]
    return len(sequences) + len(items) + len(examples)


def subprocess_seconds(args: list[str], repeats: int = 3) -> float:
    def once():
        subprocess.run(args, check=True, capture_output=True, cwd=ROOT)

    return timed(once, repeats)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty-2014"))
    args = parser.parse_args()
    folder = Path(args.data)
    results: dict[str, float] = {}

    start = time.perf_counter()
    split = load_and_split(folder)
    results["load_split/first_run_s"] = time.perf_counter() - start
    results["load_split/median_s"], _ = timed(lambda: load_and_split(folder), 5)
    results["load_split/python_peer_median_s"], _ = timed(lambda: python_load(folder), 3)
    results["load_split/users"] = split.num_users
    results["load_split/interactions"] = split.dataset.num_interactions

    from jaxrec.eval.metrics import ranking_metrics

    rng = np.random.default_rng(0)
    targets = split.targets("test")
    ranked = rng.integers(1, split.dataset.num_items + 1, size=(len(targets), 20)).astype(np.int32)
    ranked[::7, 3] = targets[::7]  # some hits, so the NDCG path does real work
    ranking_metrics(ranked, targets, split.dataset.num_items)  # warm-up
    results["evaluator/users"] = len(targets)
    results["evaluator/median_ms"] = timed(lambda: ranking_metrics(ranked, targets, split.dataset.num_items),
                                           20)[0] * 1e3
    results["evaluator/python_loop_peer_ms"] = timed(lambda: python_loop_metrics(ranked, targets, 20), 3)[0] * 1e3
    ours = ranking_metrics(ranked, targets, split.dataset.num_items, ks=(20,))
    peer = python_loop_metrics(ranked, targets, 20)
    assert abs(ours["recall@20"] - peer[0]) < 1e-12 and abs(ours["ndcg@20"] - peer[1]) < 1e-12

    python = sys.executable
    results["import_jaxrec_s"] = subprocess_seconds([python, "-c", "import jaxrec"])
    results["import_jaxrec_cli_pipeline_s"] = subprocess_seconds(
        [python, "-c", "import jaxrec.cli, jaxrec.pipeline, jaxrec.data.pipeline"])
    results["python_startup_s"] = subprocess_seconds([python, "-c", "pass"])
    with tempfile.TemporaryDirectory() as workdir:
        jaxrec = str(Path(python).parent / "jaxrec")
        results["main_job_s"] = subprocess_seconds(
            [jaxrec, "run", "--config", "configs/quickstart.py", "--workdir", workdir], repeats=1)
    record("foundation", results, command="python -m benchmarks.foundation --data " + args.data)


if __name__ == "__main__":
    main()
