"""Jitted k-means: k-means++ seeding, Lloyd iterations with empty-cluster re-seeding, optional balanced assignment.

Everything runs inside one compiled function per (N, D, k) shape: seeding is a `fori_loop` over the k centres, Lloyd
a `while_loop` that stops when no centre moves by more than `tol` (relative to the data's scale) or after `iters`
steps. Distances use ||x||^2 - 2 x.c + ||c||^2, one [N, k] matmul per step.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class KMeansResult:
    centroids: jax.Array  # [k, D]
    assignments: jax.Array  # [N] int32
    iterations: jax.Array  # Lloyd steps run
    reseeded: jax.Array  # empty clusters re-seeded over all steps


def squared_distances(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """[N, D] x [k, D] -> [N, k] squared Euclidean distances (clamped at 0 against rounding)."""
    x_sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    c_sq = jnp.sum(jnp.square(centroids), axis=-1)
    return jnp.maximum(x_sq - 2.0 * x @ centroids.T + c_sq, 0.0)


def kmeans_plus_plus(x: jax.Array, k: int, key: jax.Array) -> jax.Array:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new centre drawn with probability ∝ D(x)^2."""
    n = x.shape[0]
    first_key, loop_key = jax.random.split(key)
    first = jax.random.randint(first_key, (), 0, n)
    centroids = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
    min_d2 = jnp.sum(jnp.square(x - x[first]), axis=-1)

    def add_centre(i, carry):
        centroids, min_d2 = carry
        # All-identical points leave min_d2 == 0 everywhere: fall back to a uniform draw.
        logits = jnp.where(min_d2.sum() > 0, jnp.log(min_d2), 0.0)  # log 0 = -inf: never re-pick a centre
        chosen = jax.random.categorical(jax.random.fold_in(loop_key, i), logits)
        centroids = centroids.at[i].set(x[chosen])
        min_d2 = jnp.minimum(min_d2, jnp.sum(jnp.square(x - x[chosen]), axis=-1))
        return centroids, min_d2

    centroids, _ = jax.lax.fori_loop(1, k, add_centre, (centroids, min_d2))
    return centroids


def balanced_assignment(distances: jax.Array, capacity: int) -> jax.Array:
    """Assign each point to its nearest centre that still has room (at most `capacity` points per centre).

    Points choose in order of regret (second-nearest minus nearest distance, largest first), so those with the most
    to lose get their first choice; a greedy approximation of the min-cost balanced assignment.
    """
    n, k = distances.shape
    two_nearest = -jax.lax.top_k(-distances, 2)[0] if k > 1 else jnp.concatenate([distances, distances], -1)
    order = jnp.argsort(-(two_nearest[:, 1] - two_nearest[:, 0]))

    def assign(i, carry):
        assignments, counts = carry
        point = order[i]
        choice = jnp.argmin(jnp.where(counts < capacity, distances[point], jnp.inf))
        return assignments.at[point].set(choice.astype(jnp.int32)), counts.at[choice].add(1)

    assignments, _ = jax.lax.fori_loop(0, n, assign, (jnp.zeros(n, jnp.int32), jnp.zeros(k, jnp.int32)))
    return assignments


def distinct_assignment(distances: jax.Array, groups: jax.Array, num_groups: int) -> jax.Array:
    """Nearest centre per point such that points of one group get distinct centres (while the group is no larger
    than the codebook); points choose in order of their nearest distance, closest first.

    Used for the last RQ level, so that items sharing every earlier code differ in the last one where possible
    (LC-Rec's motivation for its uniform last-level mapping), instead of relying on the collision digit.
    """
    n, k = distances.shape
    order = jnp.argsort(distances.min(axis=1))

    def assign(i, carry):
        assignments, taken = carry
        point = order[i]
        group = groups[point]
        free = ~taken[group]
        row = jnp.where(free.any() & ~free, jnp.inf, distances[point])  # a full group falls back to nearest
        choice = jnp.argmin(row)
        return assignments.at[point].set(choice.astype(jnp.int32)), taken.at[group, choice].set(True)

    init = (jnp.zeros(n, jnp.int32), jnp.zeros((num_groups, k), bool))
    return jax.lax.fori_loop(0, n, assign, init)[0]


def _assign(x: jax.Array, centroids: jax.Array, balanced: bool) -> tuple[jax.Array, jax.Array]:
    distances = squared_distances(x, centroids)
    if balanced:
        k = centroids.shape[0]
        assignments = balanced_assignment(distances, -(-x.shape[0] // k))
    else:
        assignments = jnp.argmin(distances, axis=-1).astype(jnp.int32)
    return assignments, jnp.take_along_axis(distances, assignments[:, None], axis=-1)[:, 0]


def _update(x: jax.Array, centroids: jax.Array, assignments: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean of each cluster; empty clusters move to the points farthest from their centres (one point each)."""
    k = centroids.shape[0]
    sums = jax.ops.segment_sum(x, assignments, num_segments=k)
    counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), assignments, num_segments=k)
    means = sums / jnp.maximum(counts, 1.0)[:, None]
    empty = counts == 0
    point_d2 = jnp.sum(jnp.square(x - centroids[assignments]), axis=-1)
    farthest = jax.lax.top_k(point_d2, min(k, x.shape[0]))[1]
    # The j-th empty cluster takes the j-th farthest point.
    rank = jnp.clip(jnp.cumsum(empty) - 1, 0, farthest.shape[0] - 1)
    new = jnp.where(empty[:, None], x[farthest[rank]], means)
    return new, empty.sum()


@partial(jax.jit, static_argnames=("k", "iters", "balanced"))
def kmeans(x: jax.Array, k: int, key: jax.Array, *, iters: int = 100, tol: float = 1e-4,
           balanced: bool = False) -> KMeansResult:
    """k-means++ seeding then Lloyd steps until every centre moves less than `tol` x the data's RMS norm."""
    x = x.astype(jnp.float32)
    scale2 = jnp.mean(jnp.sum(jnp.square(x - x.mean(0)), axis=-1)) + 1e-30
    centroids = kmeans_plus_plus(x, k, key)

    def cond(carry):
        _, step, shift2, _ = carry
        return (step < iters) & (shift2 > tol * tol * scale2)

    def body(carry):
        centroids, step, _, reseeded = carry
        assignments, _ = _assign(x, centroids, balanced)
        new, empties = _update(x, centroids, assignments)
        shift2 = jnp.max(jnp.sum(jnp.square(new - centroids), axis=-1))
        return new, step + 1, shift2, reseeded + empties

    init = (centroids, jnp.int32(0), jnp.float32(jnp.inf), jnp.int32(0))
    centroids, steps, _, reseeded = jax.lax.while_loop(cond, body, init)
    assignments, _ = _assign(x, centroids, balanced)
    return KMeansResult(centroids, assignments, steps, reseeded)


jax.tree_util.register_dataclass(KMeansResult, data_fields=["centroids", "assignments", "iterations", "reseeded"],
                                 meta_fields=[])
