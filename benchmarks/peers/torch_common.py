"""What the PyTorch peers share: the device (the GPU when torch sees one, else the CPU, the same machine as the JAX
side), timing one AdamW step, and the Python trie that `prefix_allowed_tokens_fn` walks."""

from __future__ import annotations

import time

import numpy as np
import torch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def adamw_step_seconds(model: torch.nn.Module, inputs: dict[str, torch.Tensor], steps: int = 10, warmup: int = 2,
                       learning_rate: float = 1e-3) -> float:
    """Median seconds of one AdamW step (forward with `inputs` returning `.loss`, backward, update)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model(**inputs).loss.backward()
        optimizer.step()
        synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def trie_dict(sequences: np.ndarray | list[list[int]]) -> dict[tuple[int, ...], list[int]]:
    """prefix (tuple of tokens) -> allowed next tokens, for every prefix of every catalogue sequence (an [N, L]
    array, or a list of variable-length token lists)."""
    allowed: dict[tuple[int, ...], set[int]] = {}
    for row in (sequences.tolist() if isinstance(sequences, np.ndarray) else sequences):
        for depth in range(len(row)):
            allowed.setdefault(tuple(row[:depth]), set()).add(row[depth])
    return {prefix: sorted(tokens) for prefix, tokens in allowed.items()}
