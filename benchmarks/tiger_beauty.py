"""TIGER (the 13M GRID recipe, configs/tiger_beauty.py) on Amazon Beauty through `jaxrec run`: test metrics of the
best run by validation Recall@10, every run's validation curve, wall times, and the test evaluation timed alone.

    python -m benchmarks.tiger_beauty [--data ../shared/data/amazon-beauty-2014] [--sid-table runs/.../sid_table.npz]
        [--variant NAME=--config.a.b=v,--config.c=w ...] [--parallel] [extra --config overrides for every run]

Each `--variant` is one `jaxrec run` in <workdir>/<NAME> with its overrides (default: one run of the recipe as
configured). `--parallel` runs the variants at once on the one accelerator (each gets 1/n of its memory); their
wall times are then upper bounds of a run alone. The reported test metrics are those of the variant with the best
validation Recall@10 (model selection on validation only). The best run's test evaluation is then timed in this
process, alone: once cold (compilation included) and once warm.

Targets (TIGER issue): test Recall@10 >= 0.0648, NDCG@10 >= 0.0384, Recall@5 >= 0.0454; on one H100 the training
run <= 10 minutes and the test evaluation <= 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.record import record

ROOT = Path(__file__).resolve().parent.parent


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition("=")
    if not name.isidentifier():
        raise SystemExit(f"--variant {text!r}: expected NAME=--config.x=v,--config.y=w with NAME a plain word")
    return name, [o for o in overrides.split(",") if o]


def launch(name: str, arguments: list[str], workdir: Path, env: dict[str, str]) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "log.txt", "w") as log:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "jaxrec.cli", *arguments], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def summary(workdir: Path, model: str = "tiger") -> dict:
    """Test (and validation, when evaluated) metrics, timings and the validation curve of `model` in a finished
    `jaxrec run` directory."""
    metrics = json.loads((workdir / "metrics.json").read_text())[model]
    fit = json.loads((workdir / model / "fit.json").read_text())
    result = {f"test/{k}": v for k, v in metrics["test"].items() if "@" in k}
    result.update({f"validation/{k}": v for k, v in metrics.get("validation", {}).items() if "@" in k})
    result.update({
        "seconds": metrics["seconds"], "train_loop_seconds": fit["train_seconds"],
        "validation_in_loop_seconds": fit["eval_seconds"], "steps": fit["steps"], "best_step": fit["best_step"],
        "stopped_early": fit["stopped_early"], "out_of_time": fit.get("out_of_time", False),
        "validation_curve": [{"step": h["step"], "recall@10": h["validation/recall@10"],
                              "ndcg@10": h["validation/ndcg@10"]} for h in fit["history"]],
    })
    return result


def time_test_evaluation(workdir: Path) -> dict:
    """The finished run's best checkpoint, evaluated on the full test split twice in this process."""
    import jax

    from jaxrec.data.sources import load_configured
    from jaxrec.data.splits import leave_one_out
    from jaxrec.eval.evaluator import evaluate
    from jaxrec.models import registry, tiger
    from jaxrec.predict import run_config
    from jaxrec.sid.build import TABLE_FILE
    from jaxrec.sid.table import SIDTable

    config = run_config(workdir)
    split = leave_one_out(load_configured(config.data), on_short=config.data.get("on_short", "drop"))
    table = SIDTable.load(workdir / "sid" / TABLE_FILE)
    entry = config.models.tiger
    recommender = registry.load("tiger", entry, split, workdir / "tiger", {"sid_table": table})
    times, metrics = [], {}
    for _ in range(2):
        started = time.perf_counter()
        metrics = evaluate(recommender, split, "test", max_history=config.eval.max_history, ks=tuple(config.eval.ks))
        times.append(time.perf_counter() - started)
    parameters = tiger.count_parameters(tiger.TIGERConfig(level_sizes=table.level_sizes, **entry.model.to_dict()))
    return {"test_eval_seconds_cold": times[0], "test_eval_seconds_warm": times[1], "test_users": split.num_users,
            "test_eval_users_per_s": split.num_users / times[1], "invalid_rate@20": metrics.get("invalid_rate@20"),
            "backend": jax.default_backend(), "parameters": parameters}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty-2014"))
    parser.add_argument("--workdir", default=str(ROOT / "runs" / "bench_tiger_beauty"))
    parser.add_argument("--sid-table", default="", help="a prebuilt sid_table.npz (sid.table); default: build it")
    parser.add_argument("--variant", action="append", default=[], help="NAME=--config.x=v,--config.y=w")
    parser.add_argument("--parallel", action="store_true", help="run the variants at once on one accelerator")
    parser.add_argument("--name", default="tiger_beauty", help="results/<name>.json")
    args, overrides = parser.parse_known_args()  # the rest: --config.a.b=value overrides for every variant
    unknown = [o for o in overrides if not o.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    variants = dict(parse_variant(v) for v in args.variant) or {"recipe": []}
    base = ["run", "--config", "configs/tiger_beauty.py", f"--config.data.path={args.data}",
            "--config.models.tiger.train.progress=False", *overrides]
    if args.sid_table:
        base.append(f"--config.sid.table={args.sid_table}")
    env = dict(os.environ)
    if args.parallel and len(variants) > 1:
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / len(variants):.2f}")
    root = Path(args.workdir)
    commands, walls, processes = {}, {}, {}
    started = time.perf_counter()
    for name, overrides in variants.items():
        arguments = [*base, "--workdir", str(root / name), *overrides]
        commands[name] = " ".join(["jaxrec", *arguments])
        processes[name] = launch(name, arguments, root / name, env)
        if not args.parallel:
            processes[name].wait()
            walls[name] = time.perf_counter() - started
            started = time.perf_counter()
    while any(name not in walls for name in processes):  # parallel: each run's own finishing time
        for name, process in processes.items():
            if name not in walls and process.poll() is not None:
                walls[name] = time.perf_counter() - started
        time.sleep(0.5)
    for name, process in processes.items():
        if process.returncode != 0:
            raise SystemExit(f"variant {name} failed (exit {process.returncode}); see {root / name / 'log.txt'}")
    runs = {name: {"overrides": variants[name], "wall_seconds": walls[name], **summary(root / name)}
            for name in variants}
    best = max(runs, key=lambda name: runs[name]["validation/recall@10"])
    results = {key: value for key, value in runs[best].items() if key.startswith(("test/", "validation/"))}
    results.update({"selected_variant": best, "parallel": bool(args.parallel and len(variants) > 1),
                    **time_test_evaluation(root / best), "runs": runs,
                    "model": json.loads((root / best / "config.json").read_text())["config"]["models"]["tiger"]})
    command = f"python -m benchmarks.tiger_beauty {' '.join(sys.argv[1:])}"
    record(args.name, results, command=command + "  # runs: " + " ; ".join(commands.values()))


if __name__ == "__main__":
    main()
