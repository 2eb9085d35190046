"""SASRec (full-softmax CE) on Amazon Beauty 2014 through `jaxrec run`: test metrics, validation curve, wall time.

    python -m benchmarks.sasrec_beauty [--data ../shared/data/amazon-beauty-2014] [--workdir runs/bench_sasrec]

Target (trainer issue): test Recall@10 >= 0.060 and NDCG@10 >= 0.030 within 20 minutes on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.record import record, run_jaxrec

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty-2014"))
    parser.add_argument("--workdir", default=str(ROOT / "runs" / "bench_sasrec_beauty"))
    parser.add_argument("overrides", nargs="*", help="extra --config.a.b=value overrides")
    args = parser.parse_args()
    command, wall = run_jaxrec(["run", "--config", "configs/sasrec_beauty.py", "--workdir", args.workdir,
                                f"--config.data.path={args.data}", "--config.models.sasrec.train.progress=False",
                                *args.overrides], args.workdir)
    metrics = json.loads((Path(args.workdir) / "metrics.json").read_text())
    fit = json.loads((Path(args.workdir) / "sasrec" / "fit.json").read_text())
    results = {f"test/{k}": v for k, v in metrics["sasrec"]["test"].items() if "@" in k}
    results.update({f"validation/{k}": v for k, v in metrics["sasrec"]["validation"].items() if "@" in k})
    results.update({
        "wall_seconds": wall,
        "train_loop_seconds": fit["train_seconds"],
        "steps": fit["steps"],
        "best_step": fit["best_step"],
        "stopped_early": fit["stopped_early"],
        "validation_curve": [{"step": h["step"], "recall@10": h["validation/recall@10"],
                              "ndcg@10": h["validation/ndcg@10"]} for h in fit["history"]],
        "popularity/test/recall@10": metrics["popularity"]["test"]["recall@10"],
    })
    record("sasrec_beauty", results, command=command)


if __name__ == "__main__":
    main()
