"""The hand-written attention backward equals JAX's autodiff of the plain formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.nn import sdpa


def reference(layout, scale, q, k, v, mask, bias, keep, rate):
    scores = jnp.einsum(f"{layout.q},{layout.k}->{layout.s}", q, k) * scale
    if bias is not None:
        scores = scores + bias
    weights = jax.nn.softmax(jnp.where(mask, scores, jnp.finfo(jnp.float32).min), axis=-1)
    if keep is not None:
        weights = jnp.where(keep, weights / (1.0 - rate), 0)
    return jnp.einsum(f"{layout.s},{layout.k}->{layout.o}", weights, v)


def operands(layout, rng, with_bias, with_dropout):
    batch, length, kv_heads, groups, dim = 2, 7, 2, 3, 4
    keys = jax.random.split(rng, 6)
    if layout is sdpa.GROUPED:
        q = jax.random.normal(keys[0], (batch, length, kv_heads, groups, dim))
        k, v = (jax.random.normal(key, (batch, length, kv_heads, dim)) for key in keys[1:3])
        scores = (batch, kv_heads, groups, length, length)
    else:
        q, k, v = (jax.random.normal(key, (batch, kv_heads, length, dim)) for key in keys[:3])
        scores = (batch, kv_heads, length, length)
    # Causal with left padding: row 0 has two pad positions, whose query rows attend nothing at all.
    valid = np.ones((batch, length), bool)
    valid[0, :2] = False
    mask = np.tril(np.ones((length, length), bool))[None] & valid[:, None, :] & valid[:, :, None]
    mask = jnp.asarray(mask.reshape(batch, *([1] * (len(scores) - 3)), length, length))
    # "shared": one bias for the batch (T5's relative positions); "per_key": a bias per row and key.
    bias_shape = {"shared": (1, *scores[1:]), "per_key": (batch, *([1] * (len(scores) - 2)), length)}
    bias = jax.random.normal(keys[3], bias_shape[with_bias]) if with_bias else None
    keep = jax.random.bernoulli(keys[4], 0.8, scores) if with_dropout else None
    return q, k, v, mask, bias, keep


@pytest.mark.parametrize("layout", [sdpa.MULTI_HEAD, sdpa.GROUPED], ids=["multi_head", "grouped"])
@pytest.mark.parametrize("with_bias", [None, "shared", "per_key"])
@pytest.mark.parametrize("with_dropout", [False, True])
def test_gradients_match_autodiff(layout, with_bias, with_dropout):
    q, k, v, mask, bias, keep = operands(layout, jax.random.key(0), with_bias, with_dropout)
    rate = 0.2 if with_dropout else 0.0
    # A loss that reaches every output, fully masked query rows included.
    cotangent = jax.random.normal(jax.random.key(1), reference(layout, 0.5, q, k, v, mask, bias, keep, rate).shape)

    def loss(fn, q, k, v, bias):
        return jnp.sum(fn(layout, 0.5, q, k, v, mask, bias, keep, rate) * cotangent)

    ours = jax.value_and_grad(lambda *a: loss(sdpa.attention, *a), argnums=(0, 1, 2, 3))(q, k, v, bias)
    theirs = jax.value_and_grad(lambda *a: loss(reference, *a), argnums=(0, 1, 2, 3))(q, k, v, bias)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6, atol=1e-6)
    names = ["q", "k", "v", "bias"]
    for name, mine, expected in zip(names, ours[1], theirs[1]):
        if expected is None:
            assert mine is None
            continue
        assert mine.shape == expected.shape, name
        np.testing.assert_allclose(mine, expected, rtol=1e-5, atol=1e-5, err_msg=name)


def test_bf16_operands_keep_their_dtype():
    q, k, v, mask, _, _ = operands(sdpa.GROUPED, jax.random.key(2), None, False)
    q, k, v = (x.astype(jnp.bfloat16) for x in (q, k, v))
    _, grads = jax.value_and_grad(
        lambda q, k, v: jnp.sum(sdpa.attention(sdpa.GROUPED, 0.5, q, k, v, mask).astype(jnp.float32)),
        argnums=(0, 1, 2))(q, k, v)
    assert [g.dtype for g in grads] == [jnp.bfloat16] * 3
    expected = jax.grad(lambda q: jnp.sum(reference(sdpa.GROUPED, 0.5, q, k.astype(jnp.float32),
                                                    v.astype(jnp.float32), mask, None, None, 0.0)))(
        q.astype(jnp.float32))
    np.testing.assert_allclose(grads[0].astype(jnp.float32), expected, rtol=0.05, atol=0.05)
