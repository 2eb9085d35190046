"""Matrix-multiply throughput, JAX (XLA) vs PyTorch 2.13.0, at the shapes that dominate our train steps; one run,
same machine. It explains the CPU train-step comparisons of `tiger_speed` and `llm_speed`: both sides spend most
of a step in these products, so a step can only be as much faster as its matmuls are.

    python -m benchmarks.cpu_matmul [--repeats 10]

Shapes (rows x inner x outer): TIGER's 13M shape at batch 256 x 80 tokens (20,480 rows: feed-forward up and
down, fused q/k/v) and the LLM-as-RS speed shape at 16 x 305 tokens (4,880 rows: MLP up and down). Each side
multiplies two ones-filled matrices of the given dtype: JAX through one jitted `a @ b` (result awaited), torch
through `a @ b` with every core as threads. GFLOP/s = 2 * rows * inner * outer / median seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from benchmarks.record import record

SHAPES = {"tiger_ff_up": (20480, 128, 1024), "tiger_ff_down": (20480, 1024, 128), "tiger_qkv": (20480, 128, 384),
          "llm_mlp_up": (4880, 256, 768), "llm_mlp_down": (4880, 768, 256)}


def median_seconds(multiply, a, b, repeats: int, wait) -> float:
    wait(multiply(a, b))  # compile / warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        wait(multiply(a, b))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    matmul = jax.jit(lambda a, b: a @ b)
    results: dict = {"threads": os.cpu_count(), "jax_version": jax.__version__, "torch_version": torch.__version__}
    for name, (rows, inner, outer) in SHAPES.items():
        flops = 2 * rows * inner * outer
        for dtype in ("float32", "bfloat16"):
            ours = median_seconds(matmul, jnp.ones((rows, inner), dtype), jnp.ones((inner, outer), dtype),
                                  args.repeats, jax.block_until_ready)
            peer = median_seconds(lambda a, b: a @ b, torch.ones(rows, inner, dtype=getattr(torch, dtype)),
                                  torch.ones(inner, outer, dtype=getattr(torch, dtype)), args.repeats, lambda x: x)
            results[f"jax/{dtype}/{name}_gflops"] = flops / ours / 1e9
            results[f"torch/{dtype}/{name}_gflops"] = flops / peer / 1e9
            results[f"ratio/{dtype}/{name}_jax_over_torch"] = peer / ours
    record("cpu_matmul", results, command=f"python -m benchmarks.cpu_matmul --repeats {args.repeats}")


if __name__ == "__main__":
    main()
