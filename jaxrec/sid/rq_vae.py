"""RQ-VAE (TIGER) and plain residual VQ, trained with a straight-through estimator.

The model: an MLP encoder (ReLU) to a latent, `levels` residual codebooks, an MLP decoder back to the embedding.
Loss per example = reconstruction (squared error summed over features) + sum over levels of
||sg(r_l) - c_l||^2 + beta ||r_l - sg(c_l)||^2 (codebook + commitment). Codebooks start from RQ-KMeans on the
initial latents; codes unused for `restart_every` steps restart at random residuals of the current batch.
With `method="residual_vq"` the encoder and decoder are the identity: the codebooks are fitted to the embeddings.

Training runs `restart_every` steps per compiled `lax.scan` call, so Python dispatch stays out of the loop.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxrec.nn.layers import Dense
from jaxrec.sid.kmeans import squared_distances
from jaxrec.sid.quantizers import Quantization, QuantizerConfig
from jaxrec.sid.rq_kmeans import residual_levels, rq_kmeans


class DenseStack(nnx.Module):
    """Dense layers with ReLU between them (none after the last); the identity for an empty `dims[1:]`."""

    def __init__(self, dims: tuple[int, ...], *, rngs: nnx.Rngs):
        self.layers = nnx.List([Dense((a,), (b,), (None, None), rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = jax.nn.relu(x)
        return x


class RQVAE(nnx.Module):
    def __init__(self, input_dim: int, config: QuantizerConfig, *, rngs: nnx.Rngs):
        if config.method == "residual_vq":
            dims: tuple[int, ...] = (input_dim,)
        else:
            dims = (input_dim, *config.hidden, config.latent_dim)
        self.encoder = DenseStack(dims, rngs=rngs)
        self.decoder = DenseStack(tuple(reversed(dims)), rngs=rngs)
        self.codebooks = nnx.Param(jnp.zeros((config.levels, config.codebook_size, dims[-1]), jnp.float32))
        self.beta = config.beta

    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        z = self.encoder(x)
        residual, quantized, quant_loss, codes, level_inputs = z, jnp.zeros_like(z), 0.0, [], []
        codebooks = self.codebooks[...]
        for level in range(codebooks.shape[0]):
            codebook = codebooks[level]
            code = jnp.argmin(squared_distances(residual, codebook), axis=-1)
            chosen = codebook[code]
            quant_loss = quant_loss + jnp.sum(jnp.square(jax.lax.stop_gradient(residual) - chosen), -1) \
                + self.beta * jnp.sum(jnp.square(residual - jax.lax.stop_gradient(chosen)), -1)
            level_inputs.append(residual)
            quantized = quantized + chosen
            residual = residual - jax.lax.stop_gradient(chosen)
            codes.append(code)
        z_q = z + jax.lax.stop_gradient(quantized - z)  # straight-through: decoder gradient flows to the encoder
        recon = jnp.sum(jnp.square(self.decoder(z_q) - x), -1)
        loss = jnp.mean(recon + quant_loss)
        return loss, {"reconstruction": jnp.mean(recon), "quantization": jnp.mean(quant_loss),
                      "codes": jnp.stack(codes, 1), "level_inputs": jnp.stack(level_inputs)}


def train_rq_vae(embeddings: np.ndarray, config: QuantizerConfig) -> Quantization:
    """Train RQ-VAE (or residual VQ) for `config.steps` steps of `config.batch_size` random items."""
    started = time.perf_counter()
    x = jnp.asarray(embeddings, jnp.float32)
    key = jax.random.key(config.seed)
    model = RQVAE(x.shape[1], config, rngs=nnx.Rngs(params=jax.random.fold_in(key, 0)))
    latents = np.asarray(jax.jit(lambda m, x: m.encoder(x))(model, x))
    init = rq_kmeans(latents, dataclasses.replace(config, method="rq_kmeans", kmeans_iters=config.init_kmeans_iters,
                                                  normalize_residuals=False, balanced=False))
    model.codebooks[...] = jnp.asarray(init.codebooks)
    optimizer = optax.adam(config.learning_rate)
    graphdef, params = nnx.split(model, nnx.Param)
    opt_state = optimizer.init(params)
    period = config.restart_every or config.steps

    def step(carry, step_key):
        params, opt_state, usage = carry
        batch = x[jax.random.randint(step_key, (config.batch_size,), 0, x.shape[0])]

        def loss_fn(params):
            return nnx.merge(graphdef, params)(batch)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        usage = usage + jax.nn.one_hot(aux["codes"], config.codebook_size, dtype=jnp.int32).sum(0)
        return (params, opt_state, usage), (loss, aux["level_inputs"])

    @partial(jax.jit, static_argnames=("length", "restart"))
    def run_period(params, opt_state, period_key, length: int, restart: bool):
        usage = jnp.zeros((config.levels, config.codebook_size), jnp.int32)
        step_keys = jax.random.split(period_key, length)
        (params, opt_state, usage), (losses, level_inputs) = jax.lax.scan(
            step, (params, opt_state, usage), step_keys)
        # Dead-code restart: a code no item chose during the period moves to a random residual of the last batch.
        dead = (usage == 0) & restart
        picks = jax.random.randint(jax.random.fold_in(period_key, 1), dead.shape, 0, config.batch_size)
        candidates = jnp.take_along_axis(level_inputs[-1], picks[..., None], axis=1)  # [L, K, dim]
        codebooks = params["codebooks"][...]
        params["codebooks"] = params["codebooks"].replace(jnp.where(dead[..., None], candidates, codebooks))
        return params, opt_state, losses, dead.sum()

    losses, restarts, done = [], 0, 0
    while done < config.steps:
        length = min(period, config.steps - done)
        last = done + length == config.steps  # no restart after the last step: unused codes stay unused
        params, opt_state, period_losses, dead = run_period(
            params, opt_state, jax.random.fold_in(key, 1 + done), length=length, restart=not last)
        done += length
        restarts += int(dead)
        losses.append(np.asarray(period_losses))
    model = nnx.merge(graphdef, params)
    return _encode_all(model, x, config, np.concatenate(losses), restarts, started)


def _encode_all(model: RQVAE, x: jax.Array, config: QuantizerConfig, losses: np.ndarray, restarts: int,
                started: float) -> Quantization:
    @jax.jit
    def encode(model, x):
        z = model.encoder(x)
        codes, errors = residual_levels(z, model.codebooks[...], normalize_residuals=False)
        quantized = jnp.sum(model.codebooks[...][jnp.arange(codes.shape[1]), codes], axis=1)
        recon = jnp.sum(jnp.square(model.decoder(quantized) - x), -1)
        return codes, errors.mean(1) / jnp.mean(jnp.sum(jnp.square(z), -1)), recon.mean() / jnp.mean(
            jnp.sum(jnp.square(x), -1))

    codes, level_errors, reconstruction = encode(model, x)
    tail = losses[-min(100, len(losses)):]
    return Quantization(
        codes=np.asarray(codes), codebooks=np.asarray(model.codebooks[...]),
        level_errors=[float(e) for e in level_errors],
        info={"steps": int(len(losses)), "final_loss": float(tail.mean()), "first_loss": float(losses[0]),
              "relative_reconstruction_error": float(reconstruction), "dead_code_restarts": restarts,
              "seconds": time.perf_counter() - started})
