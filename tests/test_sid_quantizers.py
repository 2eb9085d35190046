"""k-means, RQ-KMeans, RQ-VAE and residual VQ on small inputs with known structure."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.sid.kmeans import balanced_assignment, distinct_assignment, kmeans, kmeans_plus_plus, squared_distances
from jaxrec.sid.quantizers import QuantizerConfig, QuantizerError, quantize
from jaxrec.sid.rq_kmeans import residual_levels


def blobs(centres: int = 8, per: int = 40, dim: int = 6, spread: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim)) * 3
    labels = np.repeat(np.arange(centres), per)
    return (means[labels] + spread * rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the two labelings group the points identically (up to renaming the labels)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_squared_distances_match_brute_force():
    x, _ = blobs()
    c = x[:5]
    brute = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    np.testing.assert_allclose(squared_distances(jnp.asarray(x), jnp.asarray(c)), brute, rtol=1e-4, atol=1e-3)


def test_kmeans_recovers_separated_clusters():
    x, labels = blobs()
    result = kmeans(jnp.asarray(x), 8, jax.random.key(0))
    assert same_partition(np.asarray(result.assignments), labels)
    # Every point sits with its nearest centre, and each centre is its cluster's mean.
    assignments = np.asarray(result.assignments)
    distances = np.asarray(squared_distances(jnp.asarray(x), result.centroids))
    np.testing.assert_array_equal(assignments, distances.argmin(1))
    for k in range(8):
        np.testing.assert_allclose(np.asarray(result.centroids)[k], x[assignments == k].mean(0), atol=1e-5)


def test_kmeans_plus_plus_picks_distinct_data_points():
    x, _ = blobs(centres=4, per=10)
    centres = np.asarray(kmeans_plus_plus(jnp.asarray(x), 4, jax.random.key(1)))
    rows = [int(np.flatnonzero((x == c).all(1))[0]) for c in centres]
    assert len(set(rows)) == 4
    # With well-separated blobs, D^2 sampling lands one seed in each blob.
    assert len({row // 10 for row in rows}) == 4


def test_kmeans_reseeds_empty_clusters_with_duplicate_points():
    # 3 distinct points, 3 clusters, many duplicates: every cluster must end up non-empty.
    x = jnp.asarray(np.repeat(np.eye(3, dtype=np.float32), [20, 1, 1], axis=0))
    result = kmeans(x, 3, jax.random.key(0))
    assert sorted(np.bincount(np.asarray(result.assignments), minlength=3).tolist()) == [1, 1, 20]


def test_balanced_assignment_respects_capacity_and_prefers_nearest():
    x, _ = blobs(centres=4, per=25)
    centres = jnp.asarray(x[[0, 1, 2, 3]])  # all four seeds in the first blob: nearest assignment is lopsided
    distances = squared_distances(jnp.asarray(x), centres)
    assignments = np.asarray(balanced_assignment(distances, 25))
    assert np.bincount(assignments, minlength=4).tolist() == [25, 25, 25, 25]
    unconstrained = np.asarray(balanced_assignment(distances, 100))
    np.testing.assert_array_equal(unconstrained, np.asarray(distances).argmin(1))


def test_distinct_assignment_separates_group_members():
    # Points 0-2 share a group and all prefer centre 0; point 3 (another group) also prefers centre 0.
    distances = jnp.asarray([[0.1, 0.5, 0.9], [0.2, 0.3, 0.4], [0.05, 0.8, 0.6], [0.0, 1.0, 1.0]])
    groups = jnp.asarray([0, 0, 0, 1])
    # Closest first: point 3 -> 0 (own group); point 2 -> 0; point 0 -> 1 (0 taken); point 1 -> 2.
    assert np.asarray(distinct_assignment(distances, groups, 2)).tolist() == [1, 2, 0, 0]
    # A group larger than the codebook falls back to nearest once every centre is taken.
    many = jnp.zeros((5, 2)).at[:, 1].set(1.0)
    assert sorted(np.asarray(distinct_assignment(many, jnp.zeros(5, jnp.int32), 1)).tolist()) == [0, 0, 0, 0, 1]


def test_rq_kmeans_distinct_last_level_removes_collisions():
    # Four distinct points, two of them repeated three times: identical items always collide under nearest
    # assignment; the distinct last level separates them (their groups are smaller than the codebook).
    points = np.eye(4, dtype=np.float32) * 5
    x = points[[0, 0, 0, 1, 1, 1, 2, 3]]
    plain = quantize(x, QuantizerConfig(levels=2, codebook_size=4))
    distinct = quantize(x, QuantizerConfig(levels=2, codebook_size=4, distinct_last_level=True))
    assert len(np.unique(plain.codes, axis=0)) == 4
    np.testing.assert_array_equal(distinct.codes[:, 0], plain.codes[:, 0])
    assert len(np.unique(distinct.codes, axis=0)) == 8
    assert distinct.info["last_level_reassigned"] == 4


def test_balanced_kmeans_gives_equal_clusters():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(200, 4)).astype(np.float32))
    result = kmeans(x, 8, jax.random.key(0), balanced=True)
    assert np.bincount(np.asarray(result.assignments), minlength=8).max() <= 25


def test_rq_kmeans_codes_reconstruct_hierarchical_data():
    # Level-1 blobs, each split into level-2 sub-blobs: two levels of 4 codes name all 16 groups uniquely.
    rng = np.random.default_rng(0)
    top = rng.normal(size=(4, 8)) * 10
    sub = rng.normal(size=(4, 8))
    labels = np.repeat(np.arange(16), 12)
    x = (top[labels // 4] + sub[labels % 4] + 0.01 * rng.normal(size=(len(labels), 8))).astype(np.float32)
    q = quantize(x, QuantizerConfig(levels=2, codebook_size=4))
    assert same_partition(q.codes[:, 0], labels // 4)
    assert same_partition(q.codes[:, 0] * 4 + q.codes[:, 1], labels)
    assert q.level_errors[0] > q.level_errors[1]
    assert q.level_errors[1] < 1e-4
    # Re-encoding with the fitted codebooks reproduces the codes.
    codes, _ = residual_levels(jnp.asarray(x), jnp.asarray(q.codebooks), normalize_residuals=False)
    np.testing.assert_array_equal(np.asarray(codes), q.codes)


def test_rq_kmeans_is_deterministic_for_a_seed():
    x, _ = blobs(centres=10, per=20, spread=1.0)
    config = QuantizerConfig(levels=2, codebook_size=16, seed=3)
    a, b = quantize(x, config), quantize(x, config)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.codebooks, b.codebooks)
    c = quantize(x, dataclasses.replace(config, seed=4))
    assert not np.array_equal(a.codebooks, c.codebooks)


def test_rq_kmeans_normalized_residuals_quantize_unit_vectors():
    x, _ = blobs(centres=10, per=20, spread=1.0)
    q = quantize(x, QuantizerConfig(levels=2, codebook_size=8, normalize_residuals=True))
    codes, _ = residual_levels(jnp.asarray(x), jnp.asarray(q.codebooks), normalize_residuals=True)
    np.testing.assert_array_equal(np.asarray(codes), q.codes)
    assert all(0 < e < 1 for e in q.level_errors)


@pytest.mark.parametrize("method", ["rq_vae", "residual_vq"])
def test_rq_vae_trains_and_encodes(method):
    x, labels = blobs(centres=16, per=16, dim=12, spread=0.3)
    config = QuantizerConfig(method=method, levels=2, codebook_size=8, hidden=(32,), latent_dim=8, steps=300,
                             batch_size=64, learning_rate=3e-3, restart_every=100)
    q = quantize(x, config)
    assert q.codes.shape == (len(x), 2) and q.codes.max() < 8
    assert q.info["steps"] == 300
    assert q.info["final_loss"] < q.info["first_loss"]
    assert q.level_errors[1] < q.level_errors[0] < 1.0
    # Items of one tight blob share their first code far more often than chance.
    same_blob_same_code = np.mean([len(set(q.codes[labels == b, 0])) == 1 for b in range(16)])
    assert same_blob_same_code > 0.5
    again = quantize(x, config)
    np.testing.assert_array_equal(q.codes, again.codes)


def test_dead_codes_restart():
    # 64 codes for 4 distinct points: at most 4 codes can win (ties go to the lowest index), the rest are dead.
    x, _ = blobs(centres=4, per=32, dim=8, spread=0.0)
    q = quantize(x, QuantizerConfig(method="residual_vq", levels=1, codebook_size=64, steps=200, batch_size=32,
                                    restart_every=50))
    assert q.info["dead_code_restarts"] > 0


def test_quantizer_input_errors():
    x = np.ones((10, 4), np.float32)
    with pytest.raises(QuantizerError, match="larger than the catalogue"):
        quantize(x, QuantizerConfig(codebook_size=16))
    x[3, 1] = np.nan
    with pytest.raises(QuantizerError, match=r"NaN or Inf \(item ids \[4\]"):
        quantize(x, QuantizerConfig(codebook_size=4))
    with pytest.raises(QuantizerError, match="must be one of"):
        QuantizerConfig(method="pq")
    with pytest.raises(QuantizerError, match="unknown quantizer fields"):
        QuantizerConfig.from_dict({"level": 3})
    with pytest.raises(QuantizerError, match=r"\[items, dim\]"):
        quantize(np.ones(10), QuantizerConfig(codebook_size=4))
