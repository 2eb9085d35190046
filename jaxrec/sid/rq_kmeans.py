"""RQ-KMeans: k-means on the residuals, level after level (optionally L2-normalising each level's input, as GRID)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.sid.collisions import collision_groups
from jaxrec.sid.kmeans import distinct_assignment, kmeans, squared_distances
from jaxrec.sid.quantizers import Quantization, QuantizerConfig


def residual_levels(x: jax.Array, codebooks: list[jax.Array] | jax.Array, *,
                    normalize_residuals: bool) -> tuple[jax.Array, jax.Array]:
    """Encode with fixed codebooks: (codes [N, L], squared residual norms after each level [L, N])."""
    residual, codes, errors = x, [], []
    for codebook in codebooks:
        if normalize_residuals:
            residual = _unit(residual)
        code = jnp.argmin(squared_distances(residual, codebook), axis=-1).astype(jnp.int32)
        residual = residual - codebook[code]
        codes.append(code)
        errors.append(jnp.sum(jnp.square(residual), axis=-1))
    return jnp.stack(codes, axis=1), jnp.stack(errors)


def _unit(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _distinct_last_codes(residual: jax.Array, centroids: jax.Array, earlier: list[jax.Array]) -> jax.Array:
    groups, sizes = collision_groups(np.stack([np.asarray(c) for c in earlier], axis=1))
    return jax.jit(distinct_assignment, static_argnums=2)(
        squared_distances(residual, centroids), jnp.asarray(groups, jnp.int32), len(sizes))


def rq_kmeans(embeddings: np.ndarray, config: QuantizerConfig) -> Quantization:
    """Fit `levels` codebooks of `codebook_size` centres by k-means on successive residuals."""
    started = time.perf_counter()
    x = jnp.asarray(embeddings, jnp.float32)
    norm2 = float(jnp.mean(jnp.sum(jnp.square(x), axis=-1)))
    key = jax.random.key(config.seed)
    residual = x
    codes, codebooks, level_errors, iterations, reseeded, reassigned = [], [], [], [], [], 0
    for level in range(config.levels):
        if config.normalize_residuals:
            residual = _unit(residual)
        result = kmeans(residual, config.codebook_size, jax.random.fold_in(key, level), iters=config.kmeans_iters,
                        tol=config.kmeans_tol, balanced=config.balanced)
        assignments = result.assignments
        if config.distinct_last_level and level == config.levels - 1 and level > 0:
            assignments = _distinct_last_codes(residual, result.centroids, codes)
            reassigned = int(jnp.sum(assignments != result.assignments))
        residual = residual - result.centroids[assignments]
        codes.append(assignments)
        codebooks.append(result.centroids)
        scale = 1.0 if config.normalize_residuals else norm2
        level_errors.append(float(jnp.mean(jnp.sum(jnp.square(residual), axis=-1))) / max(scale, 1e-30))
        iterations.append(int(result.iterations))
        reseeded.append(int(result.reseeded))
    return Quantization(
        codes=np.asarray(jnp.stack(codes, axis=1)), codebooks=np.asarray(jnp.stack(codebooks)),
        level_errors=level_errors,
        info={"lloyd_iterations": iterations, "empty_clusters_reseeded": reseeded,
              "last_level_reassigned": reassigned,
              "seconds": time.perf_counter() - started})
