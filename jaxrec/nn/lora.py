"""LoRA: low-rank adapters on a model's `Dense` layers, trained while the base weights stay frozen.

`add_lora(model, targets, rank, alpha)` wraps every `Dense` whose attribute name is in `targets` (Hugging Face /
PEFT names such as `q_proj` or `down_proj` are accepted and mapped to ours) in a `LoRADense`:

    y = base(x) + (alpha / rank) * (x @ A) @ B,   A [in..., rank] ~ N(0, 1/fan_in), B [rank, out...] = 0

so the adapted model computes exactly the base model's function until B moves. Adapter weights are `LoRAParam`s
(a subclass of `nnx.Param`), which the trainer selects with the family's `trainable` filter: only they get
gradients and optimizer state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import jax
from flax import nnx

from jaxrec.nn.layers import Dense, annotated_param, contract

# PEFT's module names (Llama/Qwen checkpoints) -> our attribute names.
HF_NAMES = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "o_proj": "out", "gate_proj": "gate",
            "up_proj": "up", "down_proj": "down"}
DEFAULT_TARGETS = ("query", "key", "value", "out", "gate", "up", "down")


class LoRAParam(nnx.Param):
    """An adapter weight: trainable while the base `nnx.Param`s are frozen."""


class LoRADense(nnx.Module):
    """A frozen `Dense` plus a rank-`rank` update scaled by alpha / rank."""

    def __init__(self, base: Dense, rank: int, alpha: float, *, rngs: nnx.Rngs):
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base, self.scale = base, alpha / rank
        fan_in = math.prod(base.in_shape)
        dtype = base.kernel[...].dtype
        n_in = len(base.in_shape)
        # The adapters shard like the kernel they adapt: A over its input axes, B over its output axes.
        self.lora_a = annotated_param(rngs, nnx.initializers.normal(1.0 / math.sqrt(fan_in)), (*base.in_shape, rank),
                                      (*base.names[:n_in], None), dtype, kind=LoRAParam)
        self.lora_b = annotated_param(rngs, nnx.initializers.zeros_init(), (rank, *base.out_shape),
                                      (None, *base.names[n_in:]), dtype, kind=LoRAParam)

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.base.dtype
        low = contract(x.astype(dtype), self.lora_a[...].astype(dtype), len(self.base.in_shape))
        update = contract(low, self.lora_b[...].astype(dtype), 1)
        return self.base(x) + self.scale * update


def add_lora(model: nnx.Module, targets: Iterable[str] = DEFAULT_TARGETS, *, rank: int = 8, alpha: float = 16.0,
             rngs: nnx.Rngs) -> int:
    """Wrap, in place, every `Dense` attribute of `model` (at any depth) named in `targets`; returns how many were
    wrapped. Raises when none matches (a misspelt target would otherwise train nothing)."""
    names = {HF_NAMES.get(name, name) for name in targets}
    unknown = names - set(DEFAULT_TARGETS) - {"lm_head"}
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {sorted(unknown)}; known: {sorted(DEFAULT_TARGETS)} or the "
                         f"Hugging Face names {sorted(HF_NAMES)}")
    wrapped = 0
    for _, module in list(nnx.iter_graph(model)):
        if not isinstance(module, nnx.Module) or isinstance(module, LoRADense):
            continue
        for attribute, value in list(vars(module).items()):
            if attribute in names and isinstance(value, Dense):
                setattr(module, attribute, LoRADense(value, rank, alpha, rngs=rngs))
                wrapped += 1
    if not wrapped:
        raise ValueError(f"no Dense layer named {sorted(names)} in {type(model).__name__}")
    return wrapped


def parameter_counts(model: nnx.Module) -> dict[str, int]:
    """{"trainable": LoRA parameters, "frozen": every other parameter} (element counts)."""
    lora = sum(x.size for x in jax.tree.leaves(nnx.state(model, LoRAParam)))
    total = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    return {"trainable": int(lora), "frozen": int(total - lora)}
