"""Dropout's hashed keep masks: the keep rate, independence across keys and neighbours, determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrec.nn.layers import Dropout, hashed_keep_mask

SHAPE = (64, 40, 96)  # 245,760 elements: the standard error of a rate is ~6e-4 at rate 0.1


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_keep_rate(rate):
    kept = np.asarray(hashed_keep_mask(jax.random.key(0), SHAPE, rate)).mean()
    assert abs(kept - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / np.prod(SHAPE))


def test_masks_are_uncorrelated_across_keys_rows_and_columns():
    first = np.asarray(hashed_keep_mask(jax.random.key(1), SHAPE, 0.3), np.float64)
    second = np.asarray(hashed_keep_mask(jax.random.key(2), SHAPE, 0.3), np.float64)
    bound = 5 / np.sqrt(first.size)
    pairs = {"keys": (first, second), "columns": (first[..., 1:], first[..., :-1]),
             "rows": (first[:, 1:], first[:, :-1]), "batch": (first[1:], first[:-1])}
    for name, (a, b) in pairs.items():
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < bound, name


def test_mask_depends_only_on_key_and_shape():
    key = jax.random.key(3)
    np.testing.assert_array_equal(hashed_keep_mask(key, SHAPE, 0.2), jax.jit(hashed_keep_mask, static_argnums=(1, 2))(
        key, SHAPE, 0.2))
    assert hashed_keep_mask(key, (), 0.2).shape == ()
    assert hashed_keep_mask(key, (7,), 0.2).shape == (7,)


def test_dropout_scales_kept_values_and_is_identity_when_deterministic():
    x = jnp.ones(SHAPE)
    dropout = Dropout(0.25)
    out = np.asarray(dropout(x, deterministic=False, rngs=nnx.Rngs(dropout=0)))
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert abs(out.mean() - 1.0) < 0.01
    np.testing.assert_array_equal(dropout(x, deterministic=True), x)
    with pytest.raises(ValueError, match="rngs"):
        dropout(x, deterministic=False)
