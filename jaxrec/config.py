"""Configs are code: a `configs/<name>.py` file defines `get_config() -> ml_collections.ConfigDict`.

Any field can be overridden on the command line as `--config.a.b=value`; the value is parsed as a Python literal
(numbers, booleans, tuples, None) unless the field is a string, and must match the field's type.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import json
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

OVERRIDE_PREFIX = "--config."


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message names the file or field."""


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load `path`'s `get_config()` and apply `--config.a.b=value` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"jaxrec_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config()")
    config = module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() returned {type(config).__name__}, expected a ConfigDict")
    apply_overrides(config, overrides)
    return config


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    for override in overrides:
        if not override.startswith(OVERRIDE_PREFIX) or "=" not in override:
            raise ConfigError(f"override {override!r} is not of the form --config.field=value")
        dotted, raw = override[len(OVERRIDE_PREFIX):].split("=", 1)
        *parents, leaf = dotted.split(".")
        node = config
        for index, key in enumerate(parents):
            if not isinstance(node, ml_collections.ConfigDict) or key not in node:
                raise ConfigError(f"--config.{dotted}: no field {'.'.join(parents[:index + 1])!r} in the config")
            node = node[key]
        if not isinstance(node, ml_collections.ConfigDict):
            raise ConfigError(f"--config.{dotted}: {'.'.join(parents)!r} is a value, not a group of fields")
        if leaf not in node:
            raise ConfigError(f"--config.{dotted}: no field {dotted!r} in the config "
                              f"(fields here: {', '.join(sorted(node.keys()))})")
        current = node[leaf]
        value = raw if isinstance(current, str) else _literal(raw)
        try:
            node[leaf] = value
        except TypeError as error:
            raise ConfigError(f"--config.{dotted}={raw}: {error}") from None


def _literal(raw: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def config_hash(config: ml_collections.ConfigDict) -> str:
    """A short content hash of the resolved config, for artifact headers and run identification."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ config dataclasses
def dataclass_defaults(cls: type, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Every field's default (factories called) of the config dataclass `cls`: a `config.models` entry lists them
    all, so each one is overridable from the command line."""
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(cls) if f.name not in exclude}


def check_fields(cls: type, values: Mapping[str, Any], what: str, *, error: type[Exception] = ValueError,
                 exclude: Sequence[str] = ()) -> None:
    """Raise `error` naming the keys of `values` that are not fields of `cls` (a misspelt setting would otherwise be
    dropped silently)."""
    known = {f.name for f in dataclasses.fields(cls)} - set(exclude)
    unknown = sorted(set(values) - known)
    if unknown:
        raise error(f"unknown {what} fields {unknown}; known: {sorted(known)}")


def dataclass_from_dict(cls: type, values: Mapping[str, Any], what: str, *,
                        error: type[Exception] = ValueError) -> Any:
    """`cls(**values)` for a config dict (e.g. `ConfigDict.to_dict()`): unknown keys raise `error`, and lists are
    turned back into tuples for the fields annotated as tuples (config round trips make them lists)."""
    check_fields(cls, values, what, error=error)
    hints = typing.get_type_hints(cls)
    return cls(**{key: tuple(value) if typing.get_origin(hints[key]) is tuple and value is not None else value
                  for key, value in values.items()})
