"""Semantic IDs for Amazon Beauty through `jaxrec sid`: MiniLM on title + categories, RQ-KMeans 3 x 256.

    python -m benchmarks.sid_beauty [--data ../shared/data/amazon-beauty-2014] [--workdir runs/bench_sid_beauty]

Targets (SID issue): level-1 code usage >= 95%, unique-before-digit >= 90%, every final SID unique.
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
    parser.add_argument("--workdir", default=str(ROOT / "runs" / "bench_sid_beauty"))
    parser.add_argument("overrides", nargs="*", help="extra --config.a.b=value overrides")
    args = parser.parse_args()
    command, wall = run_jaxrec(["sid", "--config", "configs/sid_beauty.py", "--workdir", args.workdir,
                                f"--config.data.path={args.data}", "--config.sid.progress=False", *args.overrides],
                               args.workdir)
    workdir = Path(args.workdir)
    diagnostics = json.loads((workdir / "sid_diagnostics.json").read_text())
    embeddings = json.loads((workdir / "embeddings.json").read_text())
    results = {
        "items": diagnostics["items"],
        "level1/usage": diagnostics["levels"][0]["usage"],
        "levels/usage": [level["usage"] for level in diagnostics["levels"]],
        "levels/perplexity": [level["perplexity"] for level in diagnostics["levels"]],
        "unique_before_digit": diagnostics["unique_before_digit"],
        "distinct_sids_before_digit": diagnostics["distinct_sids_before_digit"],
        "largest_collision_group": diagnostics["largest_collision_group"],
        "final_sids_unique": diagnostics["final_sids_unique"],
        "level_reconstruction_error": diagnostics["level_reconstruction_error"],
        "semantic_coherence": [{key: level[key] for key in ("prefix_length", "same_leaf_category", "lift")}
                               for level in diagnostics.get("semantic_coherence", [])],
        "embed_seconds": embeddings["seconds"],
        "quantize_seconds": diagnostics["seconds"],
        "wall_seconds": wall,
        "template": embeddings["template"],
    }
    results["nearest_last_level"] = nearest_last_level(workdir)
    record("sid_beauty", results, command=command)


def nearest_last_level(workdir: Path) -> dict:
    """The same embeddings and quantizer with plain nearest-centroid codes at every level, for comparison."""
    import dataclasses

    import numpy as np

    from jaxrec.sid.collisions import with_collision_digit
    from jaxrec.sid.diagnostics import sid_diagnostics
    from jaxrec.sid.quantizers import QuantizerConfig, quantize
    from jaxrec.sid.table import SIDTable

    table = SIDTable.load(workdir / "sid_table.npz")
    config = dataclasses.replace(QuantizerConfig.from_dict(table.header["quantizer"]), distinct_last_level=False)
    quantization = quantize(np.load(workdir / "embeddings.npy"), config)
    report = sid_diagnostics(quantization, with_collision_digit(quantization.codes), config.codebook_size)
    return {"unique_before_digit": report["unique_before_digit"],
            "largest_collision_group": report["largest_collision_group"],
            "level_reconstruction_error": report["level_reconstruction_error"]}


if __name__ == "__main__":
    main()
