"""Checks that need several (fake CPU) devices; run as a subprocess by tests/test_mesh.py and tests/test_trainer.py.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/_multidevice_worker.py {sharding|equivalence|all|llm} OUT

The device count must be set before jax is imported, which pytest's own process may already have done, hence the
subprocess. Results go to OUT as JSON keyed by check (equivalence also writes the final parameters next to it as
OUT with suffix .npz).
Also importable: `tiny_split`, `tiny_family` and `tiny_train_config` are the small shared test setup.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

NUM_ITEMS = 127  # vocabulary = items + padding = 128, divisible by every tensor-parallel size used here
MAX_LENGTH = 12
MESHES = {"data8": {"data": 8}, "data2_fsdp4": {"data": 2, "fsdp": 4},
          "data2_fsdp2_tensor2": {"data": 2, "fsdp": 2, "tensor": 2}}


def tiny_split(num_users: int = 200, num_items: int = NUM_ITEMS, seed: int = 0, **options):
    from jaxrec.data.splits import leave_one_out
    from jaxrec.data.synthetic import SyntheticConfig, generate

    return leave_one_out(generate(SyntheticConfig(num_users=num_users, num_items=num_items, num_clusters=4,
                                                  seed=seed, **options)))


def tiny_model_config(num_items: int = NUM_ITEMS, **overrides):
    from jaxrec.models.sasrec import SASRecConfig

    kw = dict(max_length=MAX_LENGTH, hidden=16, num_layers=1, num_heads=2, ffn_hidden=32, dropout=0.1,
              attention_dropout=0.1)
    kw.update(overrides)
    return SASRecConfig(num_items=num_items, **kw)


def tiny_family(num_items: int = NUM_ITEMS, **overrides):
    from jaxrec.models import sasrec

    return sasrec.family(tiny_model_config(num_items, **overrides))


def tiny_train_config(**overrides):
    from jaxrec.train.defaults import train_config

    base = dict(batch_size=16, num_steps=12, eval_batch_size=256, eval_ks=(1, 5, 10), log_every_steps=4,
                progress=False, tensorboard=False, async_checkpointing=False)
    base.update(overrides)
    return train_config(**base)


def _spec_tuple(spec, ndim: int) -> tuple:
    """A PartitionSpec as a tuple of length ndim (trailing Nones made explicit, 1-tuples unwrapped)."""
    entries = list(spec) + [None] * (ndim - len(spec))
    return tuple(e[0] if isinstance(e, tuple) and len(e) == 1 else (tuple(e) if isinstance(e, tuple) else e)
                 for e in entries)


def sharding_report() -> dict:
    """For each mesh: every parameter's and every optimizer moment's actual spec next to the rules' spec."""
    import jax
    from flax import nnx

    from jaxrec.train.mesh import DEFAULT_RULES, logical_to_spec, make_mesh
    from jaxrec.train.trainer import Trainer

    report = {"device_count": jax.device_count(), "fills": {}}
    for label, shape in {"none": None, "empty": {}, "data-1": {"data": -1}, "fsdp-1": {"data": 2, "fsdp": -1},
                         "tensor-1": {"fsdp": 2, "tensor": -1}, "explicit": {"data": 2, "fsdp": 2, "tensor": 2}
                         }.items():
        report["fills"][label] = dict(make_mesh(shape).shape)
    for name, shape in MESHES.items():
        mesh = make_mesh(shape)
        trainer = Trainer(tiny_family(), tiny_train_config(), "/nonexistent-unused", mesh=mesh)
        state = trainer.init_state(12)
        params = {}
        for path, variable in nnx.to_flat_state(state.params):
            names = variable.get_metadata().get("out_sharding")
            value = variable.get_value()
            params[".".join(map(str, path))] = {
                "names": list(names) if names is not None else None,
                "expected": _spec_tuple(logical_to_spec(names, DEFAULT_RULES), value.ndim) if names else None,
                "actual": _spec_tuple(value.sharding.spec, value.ndim),
                "mesh_matches": value.sharding.mesh.shape == mesh.shape,
                "shape": list(value.shape),
            }
        moments = {}
        for moment in ("mu", "nu"):
            found = [s for s in jax.tree.leaves(state.opt_state, is_leaf=lambda x: hasattr(x, moment))
                     if hasattr(s, moment)]
            if len(found) != 1:
                raise AssertionError(f"expected one optimizer state with {moment}, found {len(found)}")
            for path, variable in nnx.to_flat_state(getattr(found[0], moment)):
                value = variable.get_value() if hasattr(variable, "get_value") else variable
                moments[f"{moment}:{'.'.join(map(str, path))}"] = _spec_tuple(value.sharding.spec, value.ndim)
        report[name] = {"mesh": dict(mesh.shape), "params": params, "moments": moments}
    return report


def _train(trainer, state, columns: dict, steps: int) -> tuple:
    """`steps` train steps on the trainer's mesh over the batches fit would draw (one process); (state, losses)."""
    from jaxrec.data.pipeline import example_batches
    from jaxrec.train.mesh import shard_batch

    config, family = trainer.config, trainer.family
    iterator = iter(example_batches(columns, batch_size=config.batch_size, seed=config.seed, num_epochs=None,
                                    padded=family.padded_columns, shard_index=0, shard_count=1))
    losses = []
    for _ in range(steps):
        state, metrics = trainer.train_step(state, shard_batch(next(iterator), trainer.mesh))
        losses.append(float(metrics["loss"]))
    return state, losses


def _param_arrays(params, prefix: str) -> dict[str, np.ndarray]:
    """Every parameter as a host array, keyed `<prefix>/<dotted path>` (for np.savez)."""
    import jax
    from flax import nnx

    return {f"{prefix}/{'.'.join(map(str, path))}": np.asarray(jax.device_get(variable.get_value()))
            for path, variable in nnx.to_flat_state(params)}


def equivalence_report(out: Path, steps: int = 12) -> dict:
    """Train `steps` steps from the same seed on several meshes; loss trajectories and final parameters."""
    import jax

    from jaxrec.train.mesh import make_mesh
    from jaxrec.train.trainer import Trainer

    split = tiny_split()
    family = tiny_family()
    config = tiny_train_config(num_steps=steps)
    columns = family.training_columns(split)
    meshes = {"single": make_mesh(devices=jax.devices()[:1]), "data8": make_mesh({"data": 8}),
              "fsdp8": make_mesh({"fsdp": 8}), "data2_fsdp2_tensor2": make_mesh({"data": 2, "fsdp": 2, "tensor": 2})}
    report, arrays = {"device_count": jax.device_count()}, {}
    for name, mesh in meshes.items():
        trainer = Trainer(family, config, "/nonexistent-unused", mesh=mesh)
        state = trainer.init_state(steps)
        state, losses = _train(trainer, state, columns, steps)
        report[name] = {"losses": losses, "devices": len(mesh.devices.flat), "step": int(state.step)}
        arrays.update(_param_arrays(state.params, name))
    np.savez(out.with_suffix(".npz"), **arrays)
    return report


LLM_MESHES = {"data2_fsdp2_tensor2": {"data": 2, "fsdp": 2, "tensor": 2}}  # every axis at once


def llm_report(out: Path, steps: int = 6) -> dict:
    """A tiny LLM-as-RS (from scratch, LoRA on a random base, and LoRA with CF injection) on one device and on
    FSDP + tensor-parallel meshes: every parameter's spec next to its rules' spec, the loss trajectory, final
    parameters and the recommendations of the trained model."""
    import jax
    from flax import nnx

    from jaxrec.models import llm_rs
    from jaxrec.train.mesh import DEFAULT_RULES, logical_to_spec, make_mesh
    from jaxrec.train.trainer import Trainer

    split = tiny_split(num_users=120, num_items=12)
    histories = split.histories("test", 5)[:32]
    shape = dict(tokenizer_vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                 num_kv_heads=2, head_dim=8, max_history=5, beam_width=8,
                 prompt={"max_prompt_tokens": 64, "max_title_tokens": 16})
    report, arrays = {"device_count": jax.device_count()}, {}
    # "cf": LoRA with collaborative-filtering injection (a random item table; the projection trains beside the
    # adapters, its kernel laid out (None, "embed")).
    cf_table = np.random.default_rng(0).normal(size=(split.dataset.num_items + 1, 6)).astype(np.float32)
    for mode in ("scratch", "lora", "cf"):
        config = llm_rs.LLMRSConfig(mode="lora" if mode == "cf" else mode, **shape,
                                    cf_embeddings="random-table.npy" if mode == "cf" else "")
        family = llm_rs.LLMRSFamily(config, split.dataset.catalog, out.parent / f"llm-{mode}",
                                    cf=cf_table if mode == "cf" else None).model_family()
        config = tiny_train_config(num_steps=steps)
        columns = family.training_columns(split)
        meshes = {"single": make_mesh(devices=jax.devices()[:1]),
                  **{name: make_mesh(mesh) for name, mesh in LLM_MESHES.items()}}
        for name, mesh in meshes.items():
            trainer = Trainer(family, config, "/nonexistent-unused", mesh=mesh)
            state = trainer.init_state(steps)
            specs = {}
            for kind, tree in (("trainable", state.params), ("frozen", trainer.frozen)):
                for path, variable in nnx.to_flat_state(tree):
                    names = variable.get_metadata().get("out_sharding")
                    value = variable.get_value()
                    specs[".".join(map(str, path))] = {
                        "kind": kind, "actual": _spec_tuple(value.sharding.spec, value.ndim),
                        "expected": _spec_tuple(logical_to_spec(names, DEFAULT_RULES), value.ndim) if names else None}
            state, losses = _train(trainer, state, columns, steps)
            ranked = trainer.recommender(state.params).recommend(histories, 8)
            report[f"{mode}/{name}"] = {"losses": losses, "specs": specs, "ranked": ranked.tolist()}
            arrays.update(_param_arrays(state.params, f"{mode}/{name}"))
    np.savez(out.with_suffix(".npz"), **arrays)
    return report


def main(argv: list[str]) -> None:
    command, out = argv[0], Path(argv[1])
    if command not in ("sharding", "equivalence", "all", "llm"):
        raise SystemExit(f"unknown command {command!r}")
    report = {}
    if command == "llm":
        report["llm"] = llm_report(out)
    if command in ("sharding", "all"):
        report["sharding"] = sharding_report()
    if command in ("equivalence", "all"):
        report["equivalence"] = equivalence_report(out)
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
