"""Sweeps as code: a base config (`configs/<name>.py`) and a list of override points, each run in its own directory.

An `experiments/<name>.py` file defines `get_sweep(**params) -> Sweep`; its keyword parameters (with defaults) are
set from the command line as `--sweep.<param>=value` (parsed as a Python literal unless the default is a string),
for what differs between machines: checkpoint folders, seeds.

    from jaxrec.sweep import Sweep, grid, zip_, product

    def get_sweep(seeds=(0, 1)):
        sizes = zip_(label=["small", "large"], **{"models.tiger.model.num_layers": [1, 4],
                                                    "models.tiger.model.d_model": [64, 128]})
        return Sweep(name="tiger_size", base="configs/tiger_beauty.py", points=sizes, seeds=seeds,
                     common={"models.tiger.train.max_train_seconds": 600.0})

Points are dicts of dotted config keys (`models.tiger.model.num_layers`, as `--config.a.b=value` spells them) to
values; `grid` is their Cartesian product, `zip_` walks axes in step, `labelled` names points, `product` combines
groups, and `+` concatenates lists of points. A point's reserved key `label` names it instead of its overrides. `seeds` runs every point once
per seed (setting `train.seed` of every trained model in the config); `common` overrides apply to every point.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import inspect
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from jaxrec.config import OVERRIDE_PREFIX, ConfigError, load_config

LABEL = "label"
REPO_ROOT = Path(__file__).resolve().parents[2]
Value = str | int | float | bool | None | tuple
_ID_CHARS = re.compile(r"[^A-Za-z0-9._=,+@-]+")
MAX_ID_LENGTH = 120


def grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Every combination of the axes' values (the first axis varies slowest): grid(a=[1, 2], b=[3]) ->
    [{a: 1, b: 3}, {a: 2, b: 3}]. Dotted keys go through `**{"models.x.y": [...]}`."""
    _check_axes(axes)
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def zip_(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """The axes walked in step (all of one length): zip_(a=[1, 2], b=[3, 4]) -> [{a: 1, b: 3}, {a: 2, b: 4}]."""
    _check_axes(axes)
    lengths = {key: len(values) for key, values in axes.items()}
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"zip_: axes of different lengths {lengths}")
    return [dict(zip(axes, values, strict=True)) for values in zip(*axes.values(), strict=True)]


def product(*groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every combination of one point from each group, merged (a key set by two groups is an error; labels are
    joined with ',')."""
    points: list[dict[str, Any]] = [{}]
    for group in groups:
        merged = []
        for left, right in itertools.product(points, group):
            shared = (set(left) & set(right)) - {LABEL}
            if shared:
                raise ConfigError(f"product: key(s) {sorted(shared)} set by two groups")
            point = {**left, **right}
            if LABEL in left and LABEL in right:
                point[LABEL] = f"{left[LABEL]},{right[LABEL]}"
            merged.append(point)
        points = merged
    return points


def labelled(points: Mapping[str, Mapping[str, Any]], prefix: str = "") -> list[dict[str, Any]]:
    """Named points: labelled({"small": {"num_layers": 1}, ...}, prefix="models.tiger.model.") ->
    [{"label": "small", "models.tiger.model.num_layers": 1}, ...]."""
    return [{LABEL: label, **{prefix + key: value for key, value in fields.items()}}
            for label, fields in points.items()]


def _check_axes(axes: Mapping[str, Sequence[Any]]) -> None:
    for key, values in axes.items():
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise ConfigError(f"axis {key!r}: expected a list of values, got {values!r}")


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A sweep definition (what `get_sweep` returns)."""

    name: str
    base: str  # a configs/<name>.py file: absolute, or relative to the repository root or the sweep file
    points: Sequence[Mapping[str, Any]] = ({},)
    seeds: Sequence[int] = ()  # each point once per seed (`train.seed` of every trained model); () = as configured
    common: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # overrides of every point (not in ids)
    requires: Sequence[str] = ()  # override keys whose values are paths that must exist before a point runs
    metric: str = "test/recall@10"  # headline metric of the progress lines
    description: str = ""
    file: str = ""  # set by `load_sweep`


@dataclasses.dataclass(frozen=True)
class Point:
    """One resolved run of a sweep."""

    id: str  # also its directory name under the sweep's workdir
    overrides: dict[str, Value]  # what varies between points (axes and seed), dotted key -> value
    args: tuple[str, ...]  # every --config.a.b=value of its `jaxrec run` (common, command line, point, seed)
    config: ml_collections.ConfigDict  # the resolved config
    hash: str  # `experiment_hash(config)`
    requires: tuple[str, ...] = ()  # paths that must exist before it runs

    def missing(self) -> list[str]:
        return [path for path in self.requires if not Path(path).exists()]


def load_sweep(path: str | Path, params: Sequence[str] = ()) -> Sweep:
    """Load `path`'s `get_sweep(**params)`; `params` are `--sweep.<name>=value` strings. Errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"jaxrec_sweep_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (ConfigError, ImportError, NameError, SyntaxError) as error:
        raise ConfigError(f"{path}: {type(error).__name__}: {error}") from None
    if not hasattr(module, "get_sweep"):
        raise ConfigError(f"{path}: defines no get_sweep()")
    kwargs = _sweep_params(path, inspect.signature(module.get_sweep), params)
    try:
        sweep = module.get_sweep(**kwargs)
    except (ConfigError, KeyError, TypeError, ValueError) as error:  # e.g. a parameter naming an unknown size
        raise ConfigError(f"{path}: get_sweep({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}): "
                          f"{type(error).__name__}: {error}") from None
    if not isinstance(sweep, Sweep):
        raise ConfigError(f"{path}: get_sweep() returned {type(sweep).__name__}, expected a jaxrec.sweep.Sweep")
    if not sweep.name or _ID_CHARS.search(sweep.name):
        raise ConfigError(f"{path}: sweep name {sweep.name!r} must be non-empty letters, digits, '._=,+@-'")
    return dataclasses.replace(sweep, file=str(path))


def _sweep_params(path: Path, signature: inspect.Signature, params: Sequence[str]) -> dict[str, Any]:
    prefix = "--sweep."
    known = {name: p.default for name, p in signature.parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    values: dict[str, Any] = {}
    for param in params:
        if not param.startswith(prefix) or "=" not in param:
            raise ConfigError(f"{path}: parameter {param!r} is not of the form --sweep.name=value")
        name, raw = param[len(prefix):].split("=", 1)
        if name not in known:
            raise ConfigError(f"{path}: get_sweep() has no parameter {name!r} (parameters: "
                              f"{', '.join(known) or 'none'})")
        default = known[name]
        values[name] = raw if isinstance(default, str) else _literal(raw)
    return values


def _literal(raw: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def base_config_path(sweep: Sweep) -> Path:
    """The sweep's base config file: absolute, or found relative to the repository root, the sweep file's folder,
    its parent (a sweep in experiments/ naming configs/...), or the working directory, in that order."""
    base = Path(sweep.base)
    folder = Path(sweep.file).resolve().parent
    candidates = [base] if base.is_absolute() else [REPO_ROOT / base, folder / base, folder.parent / base,
                                                    Path.cwd() / base]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{sweep.file}: field 'base': config file {sweep.base!r} not found (looked in "
                      f"{', '.join(str(c) for c in candidates)})")


def format_value(value: Any) -> str:
    """A value as `--config.a.b=<value>` reads it back (strings as they are, the rest as Python literals)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return repr(tuple(value))
    return repr(value)


def override_args(overrides: Mapping[str, Any]) -> list[str]:
    return [f"{OVERRIDE_PREFIX}{key}={format_value(value)}" for key, value in overrides.items()]


def experiment_hash(config: ml_collections.ConfigDict | Mapping[str, Any]) -> str:
    """A content hash of a resolved config that leaves out the `distributed` group (how many hosts run it is not
    what is measured), computed the same way from a ConfigDict or from a run's config.json."""
    values = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
    values.pop("distributed", None)
    text = json.dumps(json.loads(json.dumps(values, default=str)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expand(sweep: Sweep, global_overrides: Sequence[str] = ()) -> list[Point]:
    """Every point of `sweep` with its id, arguments and resolved config (loaded through the same `load_config`
    as `jaxrec run`, so a bad key or value fails here, naming the sweep file and the point).

    `global_overrides` (`--config.a.b=value` from the command line) apply to every point; setting a key that the
    sweep varies is an error rather than a silent winner."""
    where = sweep.file or sweep.name
    base = base_config_path(sweep)
    raw_points = list(sweep.points) or [{}]
    for index, point in enumerate(raw_points):
        if not isinstance(point, Mapping):
            raise ConfigError(f"{where}: field 'points'[{index}] is {type(point).__name__}, expected a dict of "
                              f"dotted config keys to values")
        for key, value in point.items():
            _check_value(where, key, value)
    for key, value in sweep.common.items():
        _check_value(where, key, value)
    varied = {key for point in raw_points for key in point if key != LABEL}
    global_keys = {arg[len(OVERRIDE_PREFIX):].split("=", 1)[0] for arg in global_overrides
                   if arg.startswith(OVERRIDE_PREFIX)}
    clash = sorted(varied & global_keys)
    if clash:
        raise ConfigError(f"{where}: the command line sets {clash}, which the sweep varies between points")
    try:
        base_config = load_config(base, [*override_args(sweep.common), *global_overrides])
    except ConfigError as error:
        raise ConfigError(f"{where}: base {base} with the common / command-line overrides: {error}") from None
    seed_keys = [f"models.{name}.train.seed" for name, entry in base_config.models.items()
                 if "train" in entry and "seed" in entry.train]
    if sweep.seeds and not seed_keys:
        raise ConfigError(f"{where}: field 'seeds': {base} has no trained model (models.<name>.train.seed)")
    seeds: list[int | None] = list(sweep.seeds) or [None]
    ids = _point_ids(raw_points)
    points: list[Point] = []
    for raw, point_id in zip(raw_points, ids, strict=True):
        for seed in seeds:
            overrides = {key: value for key, value in raw.items() if key != LABEL}
            full_id = point_id
            if seed is not None:
                if not isinstance(seed, int) or isinstance(seed, bool):
                    raise ConfigError(f"{where}: field 'seeds': {seed!r} is not an int")
                overrides.update({key: seed for key in seed_keys})
                full_id = f"{point_id},seed={seed}" if point_id != "base" else f"seed={seed}"
            args = (*override_args(sweep.common), *global_overrides, *override_args(overrides))
            try:
                config = load_config(base, args)
            except ConfigError as error:
                raise ConfigError(f"{where}: point {full_id!r}: {error}") from None
            requires = []
            for key in sweep.requires:
                value = _get(config, key)
                if value is _MISSING:
                    raise ConfigError(f"{where}: field 'requires': no config field {key!r}")
                if value not in ("", None):
                    requires.append(str(value))
            points.append(Point(full_id, overrides, tuple(args), config, experiment_hash(config), tuple(requires)))
    seen: dict[str, int] = {}
    for point in points:
        seen[point.id] = seen.get(point.id, 0) + 1
    duplicates = sorted(key for key, count in seen.items() if count > 1)
    if duplicates:
        raise ConfigError(f"{where}: points with the same id {duplicates}: give them distinct values or labels")
    return points


_MISSING = object()


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
    node: Any = config
    for key in dotted.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _check_value(where: str, key: str, value: Any) -> None:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{where}: override key {key!r} is not a dotted config path")
    if key == LABEL:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: label {value!r} must be a non-empty string")
        return
    items = value if isinstance(value, list | tuple) else (value,)
    if not all(item is None or isinstance(item, str | int | float | bool) for item in items):
        raise ConfigError(f"{where}: {key}={value!r}: values must be str, int, float, bool, None or tuples of them")


def _point_ids(points: Sequence[Mapping[str, Any]]) -> list[str]:
    """Readable ids: the label, else `name=value` for each override with the shortest dotted suffix that tells the
    point's keys apart (`num_layers=2,d_model=64`), characters outside [A-Za-z0-9._=,+@-] replaced by '_'."""
    keys = list(dict.fromkeys(key for point in points for key in point if key != LABEL))
    short: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[-depth:])
            if all(other == key or not (other == name or other.endswith("." + name)) for other in keys):
                short[key] = name
                break
    ids = []
    for point in points:
        if LABEL in point:
            text = point[LABEL]
        else:
            text = ",".join(f"{short[key]}={_id_value(value)}" for key, value in point.items()) or "base"
        text = _ID_CHARS.sub("_", text)
        if len(text) > MAX_ID_LENGTH:
            text = f"{text[:MAX_ID_LENGTH - 17]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
        ids.append(text)
    return ids


def _id_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "x".join(_id_value(item) for item in value)
    if isinstance(value, str) and "/" in value:
        return value.rstrip("/").rsplit("/", 1)[-1]  # a path: its last part
    return str(value)
