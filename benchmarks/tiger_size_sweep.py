"""The reduced SID-size sweep on Amazon Beauty end to end: `jaxrec sweep` over experiments/tiger_size_cpu.py (TIGER
at Table 2's four smallest sizes x two seeds, a wall-clock training budget per point), then `jaxrec report` (seed
bands, the scaling-law fit, plots); records every point and the fit.

    python -m benchmarks.tiger_size_sweep --sid-table runs/sid_beauty/sid_table.npz
        [--data ../shared/data/amazon-beauty-2014] [--workdir runs/sweeps/tiger_size_cpu] [--existing]
        [--sweep.budget=180 ...]

`--existing` records a sweep directory that `jaxrec sweep` already finished with this script's arguments (the
launcher skips finished points, so running without it on a finished directory only re-collects and re-reports).
Target (scaling issue, 2-core CPU): >= 4 sizes x >= 2 seeds through `jaxrec sweep` and `jaxrec report`, with the
plots and the fit, and the budget stated.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.record import RESULTS_DIR, record

ROOT = Path(__file__).resolve().parent.parent


def jaxrec(*arguments: str) -> None:
    subprocess.run([sys.executable, "-m", "jaxrec", *arguments], cwd=ROOT, check=True)


def point_summary(row: dict, workdir: Path) -> dict:
    """One results-table row, with the point's training steps and budget from its fit.json."""
    fit_file = workdir / row["workdir"] / row["model"] / "fit.json"
    fit = json.loads(fit_file.read_text()) if fit_file.exists() else {}
    metrics = {k: v for k, v in row["metrics"].items() if k.startswith("test/") and k.split("/")[1].startswith(
        ("recall@", "ndcg@"))}
    return {"point": row["point"], "seed": row["seed"], "status": row["status"], "parameters": row["parameters"],
            **metrics, "steps": fit.get("steps"), "best_step": fit.get("best_step"),
            "out_of_time": fit.get("out_of_time"), "train_seconds": fit.get("train_seconds"),
            "seconds": row["seconds"], "device": row["device"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty-2014"))
    parser.add_argument("--workdir", default=str(ROOT / "runs" / "sweeps" / "tiger_size_cpu"))
    parser.add_argument("--sid-table", required=True, help="a Beauty sid_table.npz (jaxrec sid configs/sid_beauty.py)")
    parser.add_argument("--existing", action="store_true", help="record a finished sweep in --workdir")
    args, extra = parser.parse_known_args()
    if any(not e.startswith(("--sweep.", "--config.")) for e in extra):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    workdir = Path(args.workdir)
    sweep = ["sweep", "--sweep", "experiments/tiger_size_cpu.py", "--workdir", str(workdir),
             f"--config.sid.table={args.sid_table}", f"--config.data.path={args.data}", *extra]
    started = time.perf_counter()
    if not args.existing:
        jaxrec(*sweep)
    sweep_seconds = time.perf_counter() - started
    jaxrec("report", "--workdir", str(workdir))
    from jaxrec.sweep.results import collect_results

    rows = collect_results(workdir)
    fit = json.loads((workdir / "report" / "fit.json").read_text())
    budget = rows[0]["config"]["models"]["tiger"]["train"]["max_train_seconds"] if rows else None
    plots = sorted((workdir / "report").glob("*.png"))
    for plot in plots:  # the figures beside the record
        shutil.copyfile(plot, RESULTS_DIR / f"tiger_size_cpu_{plot.name}")
    results = {"points": [point_summary(row, workdir) for row in rows],
               "finished": sum(row["status"] == "finished" for row in rows), "budget_seconds_per_point": budget,
               "sweep_wall_seconds": None if args.existing else sweep_seconds,
               "fit": fit, "plots": [f"tiger_size_cpu_{plot.name}" for plot in plots]}
    command = f"python -m benchmarks.tiger_size_sweep {' '.join(sys.argv[1:])}"
    record("tiger_size_cpu", results, command=command + "  # jaxrec " + " ".join(sweep))


if __name__ == "__main__":
    main()
