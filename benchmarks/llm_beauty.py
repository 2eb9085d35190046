"""LLM-as-RS trained from scratch on Amazon Beauty (configs/llm_beauty.py) through `jaxrec run`: full test-split
metrics, including the shared-title ones, the sampled validation curve, wall times and parameter counts, recorded
next to the TIGER and SASRec results already in benchmarks/results/.

    python -m benchmarks.llm_beauty [--data ../shared/data/amazon-beauty-2014] [--workdir runs/bench_llm_beauty]
        [--existing] [extra --config overrides]

`--existing` records a finished run in --workdir that was started with exactly this script's `jaxrec run` command
(printed in the record) instead of starting one. Target (LLM-as-RS issue): a Beauty run trained from scratch with
the best budget at hand, its test metrics recorded next to TIGER's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.record import RESULTS_DIR, record
from benchmarks.tiger_beauty import launch, summary

ROOT = Path(__file__).resolve().parent.parent
REFERENCES = {"tiger_13m_h100": "tiger_beauty_h100.json", "sasrec_cpu": "sasrec_beauty.json"}


def parameters(workdir: Path) -> dict:
    """Exact parameter counts of the run's model (its saved tokenizer fixes the vocabulary)."""
    from jaxrec.config import dataclass_from_dict
    from jaxrec.data.sources import load_configured
    from jaxrec.models import llm_rs, qwen
    from jaxrec.predict import run_config

    config = run_config(workdir)
    model = dataclass_from_dict(llm_rs.LLMRSConfig, config.models.llm.model.to_dict(), "LLM-as-RS model")
    parts = llm_rs.LLMRSFamily(model, load_configured(config.data).catalog, workdir / "llm")
    return {"parameters": qwen.count_parameters(parts.model_config), "titles": len(parts.titles.sequences),
            "items_sharing_a_title": parts.titles.shared}


def references() -> dict:
    """Test metrics of the other paradigms' recorded Beauty runs (same split and protocol)."""
    found = {}
    for name, file in REFERENCES.items():
        path = RESULTS_DIR / file
        if path.exists():
            recorded = json.loads(path.read_text())
            found[name] = {"commit": recorded["commit"], "device": recorded["device"],
                           **{k: v for k, v in recorded["results"].items()
                              if k.startswith("test/") and k.split("/")[-1] in ("recall@5", "recall@10", "ndcg@5",
                                                                                  "ndcg@10")}}
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty-2014"))
    parser.add_argument("--workdir", default=str(ROOT / "runs" / "bench_llm_beauty"))
    parser.add_argument("--existing", action="store_true", help="record the finished run in --workdir")
    args, overrides = parser.parse_known_args()
    unknown = [o for o in overrides if not o.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    workdir = Path(args.workdir)
    arguments = ["run", "--config", "configs/llm_beauty.py", "--workdir", str(workdir),
                 f"--config.data.path={args.data}", "--config.models.llm.train.progress=False", *overrides]
    wall = None
    if not args.existing:
        started = time.perf_counter()
        process = launch("llm", arguments, workdir, dict(os.environ))
        if process.wait() != 0:
            raise SystemExit(f"the run failed (exit {process.returncode}); see {workdir / 'log.txt'}")
        wall = time.perf_counter() - started
    results = summary(workdir, "llm")
    results.update(parameters(workdir), wall_seconds=wall, references=references(),
                   model=json.loads((workdir / "config.json").read_text())["config"]["models"]["llm"])
    command = f"python -m benchmarks.llm_beauty {' '.join(sys.argv[1:])}"
    record("llm_beauty", results, command=command + "  # run: jaxrec " + " ".join(arguments))


if __name__ == "__main__":
    main()
