"""Position-wise feed-forward blocks of pretrained transformers, with Hugging Face activation names.

One module covers the three variants the text encoders need:
  * plain `down(act(up(x)))`: BERT (exact GELU, with biases), T5 v1.0 (ReLU, no biases);
  * gated `down(act(gate(x)) * up(x))`: Flan-T5 / T5 v1.1 (tanh-approximate GELU), Qwen3 (SiLU, i.e. SwiGLU).
`hidden_layers > 1` inserts extra hidden -> hidden layers before `down` (GRID's `mlp_layers=2` TIGER blocks:
`down(act(extra(act(up(x)))))`).
`jaxrec.nn.layers.FeedForward` stays SASRec's (tanh GELU named "gelu"), so its numerics and checkpoints are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrec.nn.layers import Dense, Dropout

# Names as in `transformers.activations.ACT2FN` (config.json's hidden_act / dense_act_fn).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # HF "gelu" is the exact erf form
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation called `name` in Hugging Face configs; a clear error for one we do not implement."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nnx.Module):
    """Feed-forward block embed -> mlp -> embed, plain or gated; dropout (if any) on the hidden activations."""

    def __init__(self, dim: int, hidden: int, *, activation_name: str, gated: bool, use_bias: bool = False,
                 hidden_layers: int = 1, dropout: float = 0.0, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        if hidden_layers < 1:
            raise ValueError(f"hidden_layers must be >= 1, got {hidden_layers}")
        kw = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.activation = activation(activation_name)
        self.gate = Dense((dim,), (hidden,), ("embed", "mlp"), **kw) if gated else None
        self.up = Dense((dim,), (hidden,), ("embed", "mlp"), **kw)
        # Extra square layers: input axis replicated, output sharded like the other hidden activations.
        self.extra = nnx.List([Dense((hidden,), (hidden,), (None, "mlp"), **kw) for _ in range(hidden_layers - 1)])
        self.down = Dense((hidden,), (dim,), ("mlp", "embed"), **kw)
        self.dropout = Dropout(dropout)

    def __call__(self, x: jax.Array, *, deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
        kw = dict(deterministic=deterministic, rngs=rngs)
        if self.gate is None:
            h = self.activation(self.up(x))
        else:
            h = self.activation(self.gate(x)) * self.up(x)
        for layer in self.extra:
            h = self.activation(layer(self.dropout(h, **kw)))
        return self.down(self.dropout(h, **kw))
