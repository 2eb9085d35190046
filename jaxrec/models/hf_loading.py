"""The one Hugging Face checkpoint loader: safetensors tensors -> NNX parameters, driven by per-family key maps.

A family describes its checkpoint layout as a list of `KeyRule`s: a regex on the HF tensor name, the dotted path of
the parameter it fills (with `{0}`, `{1}`... standing for the regex groups) and a `Transform` from the HF layout
to ours (torch Linear weights are [out, in]; our `Dense` kernels are [*in, *out] with heads as their own axes).
Rules with no target list tensors that are deliberately not loaded, with the reason.

Loading is strict: every tensor in the folder must match a rule, every model parameter must be filled exactly once,
and every shape must agree; otherwise a `CheckpointError` names the folder and the key, before any tensor is read.
Tensors are then read one at a time (memory-mapped, so only one host copy exists at a time), converted to the
parameter's dtype and placed with the parameter's sharding (only the slices local devices hold are copied).

Files: `model.safetensors`, or `model.safetensors.index.json` and the shards it lists. The safetensors format is an
8-byte little-endian header size, a JSON header (dtype, shape, byte offsets of each tensor) and the raw bytes; we read
it with numpy directly so that bfloat16 and float8 tensors (which safetensors' numpy backend cannot return) load
through the same path, via ml_dtypes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np
from flax import nnx

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}


class CheckpointError(ValueError):
    """A checkpoint folder that does not fit the model: names the folder, the key and what was expected."""


# ----------------------------------------------------------------------------------------------------- key maps
class Transform:
    """HF tensor -> our parameter layout. The identity: same shape."""

    def source_shape(self, target: tuple[int, ...]) -> tuple[int, ...]:
        """The HF shape that maps onto a parameter of shape `target`."""
        return target

    def __call__(self, array: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
        return array


@dataclasses.dataclass(frozen=True)
class Linear(Transform):
    """A torch `nn.Linear` weight [out, in] -> a `Dense` kernel [*in, *out] whose first `num_in` axes are inputs."""

    num_in: int = 1

    def source_shape(self, target):
        return (math.prod(target[self.num_in:]), math.prod(target[:self.num_in]))

    def __call__(self, array, target):
        return array.T.reshape(target)


class Flat(Transform):
    """A flat vector -> a multi-axis parameter (e.g. a projection bias [H * D] -> [H, D])."""

    def source_shape(self, target):
        return (math.prod(target),)

    def __call__(self, array, target):
        return array.reshape(target)


IDENTITY, LINEAR, FLAT = Transform(), Linear(1), Flat()


@dataclasses.dataclass(frozen=True)
class KeyRule:
    """How the HF tensors whose names fully match `pattern` are loaded.

    `target`: dotted parameter path, `{0}`.. filled from the regex groups; None = deliberately not loaded (`reason`
    says why). `tied`: the tensor is a tied copy of another one (e.g. `encoder.embed_tokens` of T5's `shared`); it
    fills `target` only when no other tensor does.
    """

    pattern: str
    target: str | None
    transform: Transform = IDENTITY
    reason: str = ""
    tied: bool = False

    def __post_init__(self) -> None:
        if self.target is None and not self.reason:
            raise ValueError(f"ignored key pattern {self.pattern!r} needs a reason")


def ignore(pattern: str, reason: str) -> KeyRule:
    return KeyRule(pattern, None, reason=reason)


# ----------------------------------------------------------------------------------------------------- files
@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in `file`
    nbytes: int

    def read(self) -> np.ndarray:
        """The tensor as a numpy array (memory-mapped bytes, copied once)."""
        dtype = _DTYPES[self.dtype]
        if self.nbytes == 0:
            return np.zeros(self.shape, dtype)
        mapped = np.memmap(self.file, dtype=dtype, mode="r", offset=self.start, shape=self.shape, order="C")
        array = np.array(mapped)
        del mapped
        return array


def _read_header(path: Path) -> dict[str, TensorInfo]:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (shorter than its 8-byte header size)")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > size - 8:
            raise CheckpointError(f"{path}: corrupt safetensors header size {header_size} for a {size}-byte file")
        try:
            header = json.loads(handle.read(header_size))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{path}: unreadable safetensors header ({error})") from None
    header.pop("__metadata__", None)
    data_start = 8 + header_size
    tensors = {}
    for name, entry in header.items():
        dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
        if dtype not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype}; supported: "
                                  f"{sorted(_DTYPES)}")
        if end - begin != math.prod(shape) * _DTYPES[dtype].itemsize or data_start + end > size:
            raise CheckpointError(f"{path}: tensor {name!r} ({dtype} {list(shape)}) has inconsistent byte offsets "
                                  f"[{begin}, {end}) (truncated or corrupt file?)")
        tensors[name] = TensorInfo(name, path, dtype, shape, data_start + begin, end - begin)
    return tensors


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint folder: the index's shards, or the single file."""
    folder = Path(folder)
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise CheckpointError(f"{index}: not a safetensors index (expected a 'weight_map' object): {error}")
        files = [folder / name for name in sorted(set(weight_map.values()))]
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise CheckpointError(f"{index} lists shard(s) that do not exist: {missing}")
        return files
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    other = sorted(path.name for path in folder.glob("*") if path.suffix in (".bin", ".pt", ".h5", ".msgpack"))
    hint = f" (found {other}: convert them with save_pretrained(..., safe_serialization=True))" if other else ""
    raise CheckpointError(f"{folder}: no {SINGLE_FILE} or {INDEX_FILE}{hint}")


def read_index(folder: str | Path) -> dict[str, TensorInfo]:
    """Name -> `TensorInfo` for every tensor of the checkpoint (headers only; no tensor data is read)."""
    folder = Path(folder)
    tensors: dict[str, TensorInfo] = {}
    for path in weight_files(folder):
        for name, info in _read_header(path).items():
            if name in tensors:
                raise CheckpointError(f"{folder}: tensor {name!r} is in both {tensors[name].file.name} and "
                                      f"{path.name}")
            tensors[name] = info
    return tensors


def read_config(folder: str | Path) -> dict[str, Any]:
    """config.json of a checkpoint folder."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json (expected a Hugging Face checkpoint folder)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: invalid JSON ({error})") from None


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def weights_hash(folder: str | Path) -> str:
    """sha256 over the checkpoint's weight files: `<file name> <sha256 of its bytes>` lines, sorted by name, plus
    the index when sharded. Independent of the folder's location; each file's hash is memoised per process
    (keyed by path, size and mtime), so asking again is free."""
    folder = Path(folder)
    files = weight_files(folder)
    if (folder / INDEX_FILE).is_file():
        files = [folder / INDEX_FILE, *files]
    lines = "".join(f"{path.name} {_file_sha256(path)}\n" for path in sorted(files, key=lambda p: p.name))
    return hashlib.sha256(lines.encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------- loading
def _params(model: nnx.Module) -> dict[str, nnx.Variable]:
    return {".".join(str(part) for part in path): node for path, node in nnx.iter_graph(model)
            if isinstance(node, nnx.Param)}


def _plan(tensors: dict[str, TensorInfo], rules: Sequence[KeyRule], params: dict[str, nnx.Variable],
          folder: Path) -> list[tuple[TensorInfo, str, Transform]]:
    """(tensor, parameter, transform) for every parameter; raises on any mismatch before data is read."""
    compiled = [(re.compile(rule.pattern), rule) for rule in rules]
    primary: dict[str, tuple[TensorInfo, Transform]] = {}
    tied: dict[str, tuple[TensorInfo, Transform]] = {}
    unmapped = []
    for name in sorted(tensors):
        match = next(((m, rule) for pattern, rule in compiled if (m := pattern.fullmatch(name))), None)
        if match is None:
            unmapped.append(name)
            continue
        found, rule = match
        if rule.target is None:
            continue
        target = rule.target.format(*found.groups())
        if target not in params:
            raise CheckpointError(f"{folder}: key map sends tensor {name!r} to {target!r}, which the model does not "
                                  f"have (a bug in the family's key map)")
        slot = tied if rule.tied else primary
        if target in slot:
            raise CheckpointError(f"{folder}: tensors {slot[target][0].name!r} and {name!r} both fill parameter "
                                  f"{target!r}")
        slot[target] = (tensors[name], rule.transform)
    if unmapped:
        shown = ", ".join(repr(name) for name in unmapped[:10]) + (" ..." if len(unmapped) > 10 else "")
        raise CheckpointError(f"{folder}: {len(unmapped)} checkpoint tensor(s) map to no model parameter: {shown}")
    for target, entry in tied.items():
        primary.setdefault(target, entry)
    unfilled = sorted(set(params) - set(primary))
    if unfilled:
        shown = ", ".join(repr(name) for name in unfilled[:10]) + (" ..." if len(unfilled) > 10 else "")
        raise CheckpointError(f"{folder}: {len(unfilled)} model parameter(s) are missing from the checkpoint: "
                              f"{shown}")
    plan = []
    for target, (info, transform) in primary.items():
        shape = tuple(params[target].get_value().shape)
        expected = tuple(transform.source_shape(shape))
        if info.shape != expected:
            raise CheckpointError(f"{folder}: tensor {info.name!r} has shape {list(info.shape)}, expected "
                                  f"{list(expected)} for parameter {target!r} of shape {list(shape)}")
        plan.append((info, target, transform))
    return plan


def _place(array: np.ndarray, like: Any) -> jax.Array:
    """`array` on the devices (and with the sharding) of the value it replaces; each device gets only its slice."""
    sharding = getattr(like, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding) and isinstance(sharding.mesh, jax.sharding.AbstractMesh):
        # An abstract model (nnx.eval_shape under jax.set_mesh): the concrete mesh is the one in context.
        mesh = jax.sharding.get_mesh()
        if mesh.empty:
            raise RuntimeError("loading into an abstract sharded model needs its mesh set (jax.set_mesh)")
        sharding = jax.sharding.NamedSharding(mesh, sharding.spec)
    if sharding is None:
        return jax.device_put(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def load_weights(model: nnx.Module, folder: str | Path, rules: Sequence[KeyRule]) -> nnx.Module:
    """Fill every parameter of `model` (concrete or abstract, from `nnx.eval_shape`) from the safetensors checkpoint
    in `folder` following `rules`; returns `model`. Values take the parameter's dtype and sharding."""
    folder = Path(folder)
    params = _params(model)
    plan = _plan(read_index(folder), rules, params, folder)
    for info, target, transform in plan:
        variable = params[target]
        like = variable.get_value()
        array = transform(info.read(), tuple(like.shape)).astype(like.dtype, copy=False)
        variable.set_value(_place(array, like))
    leftover = [".".join(map(str, path)) for path, node in nnx.iter_graph(model)
                if isinstance(node, nnx.Variable) and isinstance(node.get_value(), jax.ShapeDtypeStruct)]
    if leftover:
        raise CheckpointError(f"{folder}: model state {leftover} is not a parameter and was not initialised")
    return model


def load_pretrained(create: Callable[[], nnx.Module], folder: str | Path, rules: Sequence[KeyRule]) -> nnx.Module:
    """Build the model abstractly (no random initialisation, no memory) and fill it from `folder`. Under
    `jaxrec.train.mesh.sharding_context` the parameters come out sharded by their logical axis names."""
    return load_weights(nnx.eval_shape(create), folder, rules)

