"""Shared recording for benchmark scripts: writes benchmarks/results/<name>.json in the agreed shape."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def commit() -> str:
    """$JAXREC_COMMIT when set (a copy of the tree run elsewhere, e.g. on an accelerator machine, whose git
    metadata may not be the tree's), else HEAD's hash, suffixed with '+dirty' when tracked files differ from it."""
    if os.environ.get("JAXREC_COMMIT"):
        return os.environ["JAXREC_COMMIT"]
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def device() -> str:
    """CPU model and core count (or the accelerator, when JAX sees one and it is already imported)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    if "jax" in sys.modules:
        import jax

        if jax.default_backend() != "cpu":
            text = f"{jax.devices()[0].device_kind} ({jax.default_backend()}); host: {text}"
    return text


def run_jaxrec(arguments: list[str], workdir: str | Path) -> tuple[str, float]:
    """Run this environment's `jaxrec` CLI from the repository root in a fresh `workdir` (removed first, so nothing
    is resumed or reused); returns the command as recorded and its wall seconds."""
    import shutil
    import time

    shutil.rmtree(workdir, ignore_errors=True)
    command = [str(Path(sys.executable).parent / "jaxrec"), *arguments]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent)
    return " ".join(["jaxrec", *arguments]), time.perf_counter() - started


def record(name: str, results: dict[str, Any], command: str | None = None) -> Path:
    """Write benchmarks/results/<name>.json and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "commit": commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device(),
        "command": command or " ".join([Path(sys.executable).name, *sys.argv]),
        "results": results,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path
