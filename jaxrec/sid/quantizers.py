"""Quantizer configuration, the common result type, and `quantize`: embeddings [N, D] -> codes [N, levels].

Methods:
  * ``rq_kmeans``   — residual k-means: k-means per level on the residuals (`jaxrec.sid.rq_kmeans`);
  * ``rq_vae``      — MLP encoder/decoder around a residual quantizer trained with a straight-through estimator
                      (`jaxrec.sid.rq_vae`, TIGER's recipe);
  * ``residual_vq`` — the same residual quantizer trained directly on the embeddings (no encoder/decoder).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxrec.config import dataclass_from_dict

METHODS = ("rq_kmeans", "rq_vae", "residual_vq")


class QuantizerError(ValueError):
    """A quantizer cannot run on this input (bad config, NaN embeddings, too few items for the codebook)."""


@dataclasses.dataclass(frozen=True)
class QuantizerConfig:
    method: str = "rq_kmeans"
    levels: int = 3
    codebook_size: int = 256
    seed: int = 0
    # rq_kmeans
    kmeans_iters: int = 100  # Lloyd steps per level at most
    kmeans_tol: float = 1e-4  # stop when no centre moves more than tol x the data's RMS spread
    normalize_residuals: bool = False  # GRID: L2-normalise each level's input before clustering it
    balanced: bool = False  # capacity-constrained assignment (ceil(N / codebook_size) items per code)
    distinct_last_level: bool = False  # items sharing all earlier codes take distinct last codes where possible
    # rq_vae / residual_vq
    hidden: tuple[int, ...] = (512, 256, 128)  # encoder widths (decoder mirrors them); TIGER's RQ-VAE
    latent_dim: int = 32
    steps: int = 3000
    batch_size: int = 256
    learning_rate: float = 1e-3
    beta: float = 0.25  # commitment weight
    restart_every: int = 200  # dead-code restart period in steps (0 disables)
    init_kmeans_iters: int = 20  # k-means initialisation of the codebooks on the first latents

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise QuantizerError(f"quantizer.method must be one of {METHODS}, got {self.method!r}")
        for field in ("levels", "codebook_size", "kmeans_iters", "steps", "batch_size", "latent_dim"):
            if getattr(self, field) < 1:
                raise QuantizerError(f"quantizer.{field} must be >= 1, got {getattr(self, field)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QuantizerConfig:
        return dataclass_from_dict(cls, values, "quantizer", error=QuantizerError)


@dataclasses.dataclass
class Quantization:
    """Codes for every item and how well they reconstruct the input.

    `level_errors[l]` is the mean squared residual after levels 0..l, relative to the mean squared norm of the
    quantized vectors (the embeddings for rq_kmeans/residual_vq, the encoder latents for rq_vae). With
    `normalize_residuals` each level quantizes a unit-norm input, so entry l is that level's own relative error.
    """

    codes: np.ndarray  # [N, levels] int32
    codebooks: np.ndarray  # [levels, codebook_size, dim]
    level_errors: list[float]
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


def quantizer_parameters(config: QuantizerConfig, input_dim: int) -> int:
    """Parameters of the quantizer for `input_dim`-dimensional embeddings (N_QT of the scaling-law fits): the
    codebooks, plus RQ-VAE's encoder and decoder; exact, from shapes (nothing allocated)."""
    if config.method == "rq_kmeans":
        return config.levels * config.codebook_size * input_dim
    import jax
    from flax import nnx

    from jaxrec.sid.rq_vae import RQVAE

    abstract = nnx.eval_shape(lambda: RQVAE(input_dim, config, rngs=nnx.Rngs(0)))
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param))))


def check_embeddings(embeddings: np.ndarray, config: QuantizerConfig) -> np.ndarray:
    """Validate [N, D] finite embeddings with at least `codebook_size` rows; returns float32."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise QuantizerError(f"embeddings must be [items, dim], got shape {embeddings.shape}")
    bad = ~np.isfinite(embeddings).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise QuantizerError(f"{len(rows)} embeddings hold NaN or Inf (item ids {(rows[:10] + 1).tolist()}"
                             f"{' ...' if len(rows) > 10 else ''}); re-run the encoder or fix the item text")
    if embeddings.shape[0] < config.codebook_size:
        raise QuantizerError(f"codebook_size {config.codebook_size} is larger than the catalogue "
                             f"({embeddings.shape[0]} items); use a codebook of at most {embeddings.shape[0]} codes")
    return embeddings.astype(np.float32)


def quantize(embeddings: np.ndarray, config: QuantizerConfig) -> Quantization:
    """Codes [N, levels] for embeddings [N, D] by `config.method`."""
    embeddings = check_embeddings(embeddings, config)
    if config.method == "rq_kmeans":
        from jaxrec.sid.rq_kmeans import rq_kmeans

        return rq_kmeans(embeddings, config)
    from jaxrec.sid.rq_vae import train_rq_vae

    return train_rq_vae(embeddings, config)
