"""Metric writers: JSONL (always) and TensorBoard event files (tensorboardX, no TensorFlow), on process 0 only."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax


class MetricWriter:
    def __init__(self, directory: str | Path, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        directory = Path(directory)
        self._jsonl = None
        self._tb = None
        if not self.enabled:
            return
        directory.mkdir(parents=True, exist_ok=True)
        self._jsonl = (directory / "metrics.jsonl").open("a")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(directory / "tensorboard"))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        """Scalars keyed like "train/loss" or "validation/recall@10"."""
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": step, **{k: (v if math.isfinite(v) else str(v))
                                                       for k, v in scalars.items()}}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in scalars.items():  # TensorBoard tags cannot hold '@'
                self._tb.add_scalar(key.replace("@", "_at_"), value, step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
