"""Shared fixtures: the real-data folder and a writer of small P5 folders."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _shared_data_path() -> Path:
    env = os.environ.get("JAXREC_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder holding the real benchmark data (`amazon-beauty-2014/`, `amazon-sports-2014/`).

    Taken from $JAXREC_SHARED_DATA, else `<repo>/../shared/data`. Tests that use it are skipped only when the
    folder is absent (CI has it, so they run there).
    """
    path = _shared_data_path()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set JAXREC_SHARED_DATA to the folder holding "
                    f"amazon-beauty-2014/ and amazon-sports-2014/)")
    return path


def _dataset_dir(shared_data_dir: Path, name: str) -> Path:
    path = shared_data_dir / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def beauty_dir(shared_data_dir: Path) -> Path:
    return _dataset_dir(shared_data_dir, "amazon-beauty-2014")


@pytest.fixture(scope="session")
def sports_dir(shared_data_dir: Path) -> Path:
    return _dataset_dir(shared_data_dir, "amazon-sports-2014")


@pytest.fixture(scope="session")
def beauty(beauty_dir: Path):
    """The real Beauty dataset, read once per session."""
    from jaxrec.data.p5 import read_p5

    return read_p5(beauty_dir)


def write_p5(folder: Path, items: Sequence[dict[str, Any] | str], sequences: Sequence[str] | str,
             datamaps: dict[str, Any] | str | None = None) -> Path:
    """Write a P5 folder: `items` are JSON objects (or raw lines), `sequences` the lines of sequences.txt (or its
    raw text), `datamaps` the datamaps.json content (dict or raw text; omitted when None)."""
    folder.mkdir(parents=True, exist_ok=True)
    item_lines = [line if isinstance(line, str) else json.dumps(line) for line in items]
    (folder / "items.jsonl").write_text("".join(line + "\n" for line in item_lines), encoding="utf-8")
    text = sequences if isinstance(sequences, str) else "".join(line + "\n" for line in sequences)
    (folder / "sequences.txt").write_text(text, encoding="utf-8")
    if datamaps is not None:
        raw = datamaps if isinstance(datamaps, str) else json.dumps(datamaps)
        (folder / "datamaps.json").write_text(raw, encoding="utf-8")
    return folder


@pytest.fixture
def p5_writer(tmp_path: Path):
    """`p5_writer(items, sequences, datamaps=None, name="p5")` writes a P5 folder under tmp_path and returns it."""

    def make(items, sequences, datamaps=None, name: str = "p5") -> Path:
        return write_p5(tmp_path / name, items, sequences, datamaps)

    return make
