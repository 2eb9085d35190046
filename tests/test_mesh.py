"""Device mesh construction, logical-axis rules, and parameter / optimizer-state sharding on 8 fake CPU devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from jax.sharding import PartitionSpec as P

from jaxrec.train.mesh import DEFAULT_RULES, MESH_AXES, logical_to_spec, make_mesh

TESTS = Path(__file__).resolve().parent


def worker_env(devices: int | None = None, cache_dir: Path | None = None) -> dict[str, str]:
    """Environment for a jax subprocess: `devices` fake CPU devices, cheap XLA codegen, a shared compile cache.

    The backend optimisation level only changes how XLA:CPU compiles each device's kernels (3-4x faster to compile
    these tiny models); the sharding, partitioning and numerics under test are unaffected.
    """
    env = dict(os.environ)
    flags = ["--xla_backend_optimization_level=0"]
    if devices:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env.update(XLA_FLAGS=" ".join(flags), JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    if cache_dir is not None:
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return env


def session_cache_dir(tmp_path_factory) -> Path:
    """A persistent jax compilation cache shared by this session's subprocesses (identical programs compile once)."""
    return tmp_path_factory.getbasetemp() / "jax-compilation-cache"


_multidevice_reports: dict[Path, dict] = {}


def multidevice_report(tmp_path_factory) -> dict:
    """Sharding and equivalence results from one 8-device worker run, shared by test_mesh and test_trainer."""
    base = tmp_path_factory.getbasetemp()
    if base not in _multidevice_reports:
        out = base / "multidevice" / "report.json"
        out.parent.mkdir(exist_ok=True)
        proc = subprocess.run([sys.executable, str(TESTS / "_multidevice_worker.py"), "all", str(out)],
                              env=worker_env(8, session_cache_dir(tmp_path_factory)), capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"8-device worker failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
        _multidevice_reports[base] = {**json.loads(out.read_text()), "npz": out.with_suffix(".npz")}
    return _multidevice_reports[base]


# ------------------------------------------------------------------------------------------------ make_mesh
def test_make_mesh_defaults_to_all_devices_on_data():
    for shape in (None, {}, {"data": -1}, {"data": -1, "fsdp": 1, "tensor": 1}):
        mesh = make_mesh(shape)
        assert mesh.axis_names == MESH_AXES
        assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1, "tensor": 1}


def test_make_mesh_fill_axis_other_than_data():
    mesh = make_mesh({"fsdp": -1})
    assert dict(mesh.shape) == {"data": 1, "fsdp": jax.device_count(), "tensor": 1}
    one = make_mesh({"tensor": -1}, devices=jax.devices()[:1])
    assert dict(one.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    assert list(one.devices.flat) == jax.devices()[:1]


@pytest.mark.parametrize("shape, message", [
    ({"pipeline": 2}, "unknown mesh axes"),
    ({"data": 1, "expert": 1}, "unknown mesh axes"),
    ({"data": -1, "fsdp": -1}, "at most one mesh axis may be -1"),
    ({"data": 4096}, "needs"),
    ({"data": -1, "fsdp": 4096}, "cannot be split"),
    ({"data": 0, "fsdp": -1}, "must be positive"),
    ({"data": -2}, "must be positive"),
])
def test_make_mesh_rejects_bad_shapes(shape, message):
    with pytest.raises(ValueError, match=message):
        make_mesh(shape)


# ------------------------------------------------------------------------------------------------ rules
def test_logical_to_spec_follows_default_rules():
    assert logical_to_spec(("batch", "length")) == P(("data", "fsdp"), None)
    assert logical_to_spec(("vocab", "embed")) == P("tensor", "fsdp")
    assert logical_to_spec(("embed", "mlp")) == P("fsdp", "tensor")
    assert logical_to_spec(("embed", "heads", "kv")) == P("fsdp", "tensor", None)
    assert logical_to_spec((None, "embed")) == P(None, "fsdp")
    assert logical_to_spec(()) == P()
    assert logical_to_spec(("not-a-rule",)) == P(None)  # unknown names are replicated


def test_logical_to_spec_custom_rules():
    rules = (("embed", None), ("vocab", ("fsdp", "tensor")))
    assert logical_to_spec(("vocab", "embed"), rules) == P(("fsdp", "tensor"), None)
    assert dict(DEFAULT_RULES)["batch"] == ("data", "fsdp")


# ------------------------------------------------------------------------------------------------ 8 devices
@pytest.fixture(scope="module")
def sharding_report(tmp_path_factory) -> dict:
    return multidevice_report(tmp_path_factory)["sharding"]


def test_make_mesh_fills_on_eight_devices(sharding_report):
    assert sharding_report["device_count"] == 8
    fills = sharding_report["fills"]
    assert fills["none"] == fills["empty"] == fills["data-1"] == {"data": 8, "fsdp": 1, "tensor": 1}
    assert fills["fsdp-1"] == {"data": 2, "fsdp": 4, "tensor": 1}
    assert fills["tensor-1"] == {"data": 1, "fsdp": 2, "tensor": 4}
    assert fills["explicit"] == {"data": 2, "fsdp": 2, "tensor": 2}


@pytest.mark.parametrize("mesh_name, mesh_shape", [
    ("data8", {"data": 8, "fsdp": 1, "tensor": 1}),
    ("data2_fsdp4", {"data": 2, "fsdp": 4, "tensor": 1}),
    ("data2_fsdp2_tensor2", {"data": 2, "fsdp": 2, "tensor": 2}),
])
def test_parameters_sharded_as_rules_say(sharding_report, mesh_name, mesh_shape):
    report = sharding_report[mesh_name]
    assert report["mesh"] == mesh_shape
    params = report["params"]
    assert len(params) >= 17  # embeddings, attention (fused qkv), MLP, norms
    unnamed = [path for path, p in params.items() if not p["names"]]
    assert not unnamed, f"parameters without logical axis names: {unnamed}"
    wrong = {path: (p["names"], p["expected"], p["actual"]) for path, p in params.items()
             if p["actual"] != p["expected"]}
    assert not wrong, f"parameters sharded unlike DEFAULT_RULES (names, expected, actual): {wrong}"
    assert all(p["mesh_matches"] for p in params.values())
    # The rules really split something on the non-trivial meshes.
    if mesh_shape["tensor"] > 1:
        assert params["items.embedding"]["actual"] == ["tensor", "fsdp"]
        assert params["blocks.0.ffn.up.kernel"]["actual"] == ["fsdp", "tensor"]
        assert params["blocks.0.attention.qkv.kernel"]["actual"] == ["fsdp", None, "tensor", None]
        assert params["blocks.0.attention.query_bias"]["actual"] == ["tensor", None]


@pytest.mark.parametrize("mesh_name", ["data8", "data2_fsdp4", "data2_fsdp2_tensor2"])
def test_optimizer_moments_sharded_like_params(sharding_report, mesh_name):
    report = sharding_report[mesh_name]
    params, moments = report["params"], report["moments"]
    assert len(moments) == 2 * len(params)
    for moment in ("mu", "nu"):
        for path, param in params.items():
            assert moments[f"{moment}:{path}"] == param["actual"], (moment, path)
