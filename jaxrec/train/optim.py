"""Optimizers and learning-rate schedules from config (optax)."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import ml_collections
import optax

SCHEDULES = ("constant", "warmup_cosine", "inverse_sqrt")


def schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Learning rate per step: constant, linear warmup + cosine decay, or linear warmup + inverse square root."""
    lr, warmup = config.learning_rate, config.get("warmup_steps", 0)
    name = config.get("schedule", "constant")
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")
    if name == "constant":
        return optax.constant_schedule(lr) if not warmup else optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1),
                                                  end_value=lr * config.get("end_lr_ratio", 0.0))
    warmup = max(warmup, 1)
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup),
                                 lambda step: lr * jax.numpy.sqrt(warmup / jax.numpy.maximum(step + warmup, 1))],
                                [warmup])


def decay_mask(params) -> Mapping:
    """Weight decay on matrices only: biases, norm scales and other vectors are left alone."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int) -> tuple[optax.GradientTransformation,
                                                                                   optax.Schedule]:
    """AdamW (or Adam / SGD) with global-norm clipping and the configured schedule."""
    lr = schedule(config, total_steps)
    name = config.get("name", "adamw")
    if name == "adamw":
        core = optax.adamw(lr, b1=config.get("b1", 0.9), b2=config.get("b2", 0.999), eps=config.get("eps", 1e-8),
                           weight_decay=config.get("weight_decay", 0.0), mask=decay_mask)
    elif name == "adam":
        core = optax.adam(lr, b1=config.get("b1", 0.9), b2=config.get("b2", 0.999), eps=config.get("eps", 1e-8))
    elif name == "sgd":
        core = optax.sgd(lr, momentum=config.get("momentum", None))
    else:
        raise ValueError(f"unknown optimizer {name!r}; expected adamw, adam or sgd")
    clip = config.get("clip_norm", 0.0)
    return (optax.chain(optax.clip_by_global_norm(clip), core) if clip else core), lr
