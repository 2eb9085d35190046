"""Inference cost of the two paradigms at matched beam widths on Amazon Beauty: TIGER's SID-trie beam search vs
LLM-as-RS's title-trie beam search, users/s (batches of `--batch` test users) and latency per user (batch 1).

    python -m benchmarks.inference_cost --sid-table runs/sid_beauty/sid_table.npz
        [--data ../shared/data/amazon-beauty-2014] [--users 256] [--beams 10,20]

Models (random weights; the compiled search does the same work for any weights, except that it stops once every
beam of a batch has finished, which trained models may reach sooner): TIGER 13M (GRID's recipe, the
configs/tiger_beauty.py model) over the given SID table, and the LLM-as-RS model of configs/llm_beauty.py
(4.2M parameters, 160-token prompts, 12,072 titles). Each measurement compiles first (untimed), then times
`--users` test users (throughput) and 32 users one at a time (median latency). Scaling issue: the inference-cost
benchmark, SID beam search vs title beam search at matched beam widths.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.record import record

ROOT = Path(__file__).resolve().parent.parent


def measure(recommend, histories: np.ndarray, k: int, batch: int) -> dict:
    """Users/s over `histories` in batches, and the median single-user latency over (at most) 32 users."""
    import jax

    jax.block_until_ready(recommend(histories[:batch], k))  # compile both shapes
    jax.block_until_ready(recommend(histories[:1], k))
    started = time.perf_counter()
    for start in range(0, len(histories), batch):
        jax.block_until_ready(recommend(histories[start:start + batch], k))
    throughput = len(histories) / (time.perf_counter() - started)
    latencies = []
    for row in range(min(32, len(histories))):
        started = time.perf_counter()
        jax.block_until_ready(recommend(histories[row:row + 1], k))
        latencies.append(time.perf_counter() - started)
    return {"users_per_s": throughput, "latency_ms_median": 1e3 * statistics.median(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty-2014"))
    parser.add_argument("--sid-table", required=True)
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--beams", default="10,20")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxrec.config import dataclass_from_dict, load_config
    from jaxrec.data.p5 import read_p5
    from jaxrec.data.splits import leave_one_out
    from jaxrec.models import llm_rs, qwen, tiger
    from jaxrec.sid.table import SIDTable

    split = leave_one_out(read_p5(args.data))
    table = SIDTable.load(args.sid_table)
    histories = split.histories("test", 20)[:args.users]
    results: dict = {"users": len(histories), "batch": args.batch}
    tiger_entry = load_config(ROOT / "configs" / "tiger_beauty.py").models.tiger.model.to_dict()
    llm_entry = load_config(ROOT / "configs" / "llm_beauty.py").models.llm.model.to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        for beams in (int(b) for b in args.beams.split(",")):
            k = min(10, beams)
            tiger_config = tiger.TIGERConfig(level_sizes=table.level_sizes, **{**tiger_entry, "beam_width": beams})
            sid_family = tiger.family(tiger_config, table, split)
            llm_config = dataclass_from_dict(llm_rs.LLMRSConfig, {**llm_entry, "beam_width": beams}, "LLM-as-RS")
            llm_parts = llm_rs.LLMRSFamily(llm_config, split.dataset.catalog, Path(tmp))
            llm_family = llm_parts.model_family()
            for name, family in (("sid", sid_family), ("title", llm_family)):
                graphdef, state = nnx.split(family.create(nnx.Rngs(0)))
                compiled = jax.jit(lambda s, h, k, g=graphdef, f=family: f.recommend(nnx.merge(g, s), h, k),
                                   static_argnums=(2,))
                recommend = lambda h, k, c=compiled, s=state: c(s, jnp.asarray(h), k)  # noqa: E731
                for key, value in measure(recommend, histories, k, args.batch).items():
                    results[f"{name}/beam{beams}/{key}"] = value
            results[f"ratio/beam{beams}/sid_over_title_users_per_s"] = (
                results[f"sid/beam{beams}/users_per_s"] / results[f"title/beam{beams}/users_per_s"])
        results["parameters/tiger"] = tiger.count_parameters(tiger_config)["total"]
        results["parameters/llm"] = qwen.count_parameters(llm_parts.model_config)["total"]
        results["titles"] = len(llm_parts.titles.sequences)
        results["title_trie_depth"] = llm_parts.trie.max_depth
        results["sid_tokens_per_item"] = tiger_config.layout.tokens_per_item
    record("inference_cost", results, command="python -m benchmarks.inference_cost " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()))


if __name__ == "__main__":
    main()
