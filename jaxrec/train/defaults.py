"""Default trainer settings; configs start from `train_config()` and override what they need."""

from __future__ import annotations

import ml_collections


def train_config(**overrides) -> ml_collections.ConfigDict:
    """The trainer defaults with `overrides`; a dict for a group (e.g. optimizer={"learning_rate": 3e-3}) is merged
    into that group, not substituted for it (ConfigDict.update is recursive)."""
    config = ml_collections.ConfigDict({
        "seed": 0,
        "batch_size": 128,  # global, across all processes
        "num_epochs": 50,
        "num_steps": 0,  # > 0 overrides num_epochs
        "max_train_seconds": 0.0,  # > 0: wall-clock budget of the training loop (validation included)
        "grad_accum": 1,
        "compute_dtype": "float32",  # "bfloat16": bf16 compute, fp32 master weights
        "bucket_lengths": (),  # length buckets for padded columns, e.g. (8, 16, 32, 51)
        "optimizer": {"name": "adamw", "learning_rate": 1e-3, "b1": 0.9, "b2": 0.98, "eps": 1e-8,
                      "weight_decay": 0.0, "clip_norm": 1.0, "schedule": "constant", "warmup_steps": 0,
                      "end_lr_ratio": 0.0},
        "mesh": {"data": -1, "fsdp": 1, "tensor": 1},
        "eval_every_steps": 0,  # 0: once per epoch
        # > 0: in-training validation (early stopping, checkpoint choice) on a fixed seeded sample of this many
        # validation users, for models whose full evaluation is costly (LLM-as-RS); final evaluations use everyone.
        "eval_max_users": 0,
        "eval_ks": (1, 5, 10, 20),
        "eval_batch_size": 1024,
        "early_stopping": {"metric": "recall@10", "patience": 5},
        "log_every_steps": 50,
        "checkpoint_every_steps": 0,
        "keep_checkpoints": 2,
        "async_checkpointing": True,
        "tensorboard": True,
        "progress": True,
    })
    config.update(overrides)
    return config


def distributed_config() -> ml_collections.ConfigDict:
    """Multi-process set-up for `jaxrec run` (`--config.distributed.enabled=True`; empty fields are detected by JAX
    on TPU pods and SLURM, or give coordinator_address / num_processes / process_id explicitly)."""
    return ml_collections.ConfigDict({"enabled": False, "coordinator_address": "", "num_processes": 0,
                                      "process_id": -1})
