"""Sweeps: point expansion and ids, resolution errors, every experiments/ file, the launcher (run, skip, resume,
failures, changed configs, emitted commands, points busy elsewhere, --collect), the run lock and the results table."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxrec.config import ConfigError
from jaxrec.models import registry
from jaxrec import run_lock
from jaxrec.run_lock import BUSY_EXIT_CODE, WorkdirBusy, hold_workdir, holder
from jaxrec.sweep import (
    Sweep,
    collect_results,
    expand,
    grid,
    labelled,
    load_sweep,
    product,
    zip_,
)
from jaxrec.sweep.launcher import Options, run_command, sweep_main
from jaxrec.sweep.results import ROW_KEYS, flatten_row
from jaxrec.sweep.spec import experiment_hash

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((REPO_ROOT / "experiments").glob("*.py"))

# A SASRec on a 200-user synthetic store, a handful of steps: a point runs in a few seconds (mostly JAX import).
TINY_CONFIG = '''
import ml_collections
from jaxrec.models import sasrec
from jaxrec.train.defaults import distributed_config


def get_config():
    config = ml_collections.ConfigDict()
    config.distributed = distributed_config()
    config.data = ml_collections.ConfigDict({"source": "synthetic", "path": "", "on_short": "drop",
                                             "train_fraction": 1.0,
                                             "options": {"num_users": 200, "num_items": 60, "seed": 0}})
    config.eval = ml_collections.ConfigDict({"ks": (5, 10), "max_history": 10, "cold_start": False})
    config.models = ml_collections.ConfigDict({
        "popularity": {"family": "popularity", "exclude_history": False},
        "sasrec": sasrec.config_entry({"hidden": 8, "ffn_hidden": 8, "num_layers": 1, "num_heads": 1,
                                       "max_length": 10, "dropout": 0.0, "attention_dropout": 0.0},
                                      batch_size=32, num_steps=4, eval_every_steps=4, eval_ks=(10,),
                                      progress=False, tensorboard=False, async_checkpointing=False),
    })
    return config
'''

SWEEP = '''
from jaxrec.sweep import Sweep, grid


def get_sweep(seeds=(0,), heads=(1,)):
    return Sweep(name="tiny", base="tiny_config.py", seeds=seeds,
                 points=grid(**{"models.sasrec.model.num_heads": list(heads),
                                "data.train_fraction": [0.5, 1.0]}),
                 common={"models.sasrec.train.log_every_steps": 2})
'''


@pytest.fixture
def sweep_file(tmp_path) -> Path:
    (tmp_path / "tiny_config.py").write_text(TINY_CONFIG)
    path = tmp_path / "tiny_sweep.py"
    path.write_text(SWEEP)
    return path


# ------------------------------------------------------------------------------------------------ definitions
def test_grid_zip_product_labelled():
    assert grid(a=[1, 2], b=["x"]) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert zip_(a=[1, 2], b=[3, 4]) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    assert product(zip_(label=["s", "l"], a=[1, 2]), grid(c=[0, 1])) == [
        {"label": "s", "a": 1, "c": 0}, {"label": "s", "a": 1, "c": 1},
        {"label": "l", "a": 2, "c": 0}, {"label": "l", "a": 2, "c": 1}]
    assert labelled({"s": {"n": 1}}, prefix="m.") == [{"label": "s", "m.n": 1}]
    with pytest.raises(ConfigError, match="different lengths"):
        zip_(a=[1, 2], b=[3])
    with pytest.raises(ConfigError, match=re.escape("key(s) ['a'] set by two groups")):
        product(grid(a=[1]), grid(a=[2]))
    with pytest.raises(ConfigError, match="expected a list"):
        grid(a="abc")


def test_expand_ids_overrides_and_seeds(sweep_file):
    points = expand(load_sweep(sweep_file, ["--sweep.seeds=(0, 1)"]))
    assert [p.id for p in points] == [f"num_heads=1,train_fraction={f},seed={s}" for f in (0.5, 1.0) for s in (0, 1)]
    first = points[0]
    assert first.overrides == {"models.sasrec.model.num_heads": 1, "data.train_fraction": 0.5,
                               "models.sasrec.train.seed": 0}
    assert first.config.data.train_fraction == 0.5 and first.config.models.sasrec.train.seed == 0
    assert first.config.models.sasrec.train.log_every_steps == 2  # common
    assert "--config.models.sasrec.train.log_every_steps=2" in first.args
    assert len({p.hash for p in points}) == 4
    # The hash leaves the `distributed` group out (how many hosts run a point is not what it measures).
    config = first.config.to_dict()
    config["distributed"]["num_processes"] = 8
    assert experiment_hash(config) == first.hash
    # Path values show their last part; labels name points.
    sweep = Sweep(name="x", base=str(sweep_file.parent / "tiny_config.py"), file=str(sweep_file),
                  points=zip_(label=["a b"], **{"models.sasrec.model.dtype": ["float32"]}))
    assert [p.id for p in expand(sweep)] == ["a_b"]


def test_definition_errors_name_the_file_and_point(sweep_file, tmp_path):
    sweep = load_sweep(sweep_file)
    bad_key = Sweep(name="x", base=sweep.base, file=sweep.file, points=[{"models.sasrec.model.num_hedas": 2}])
    with pytest.raises(ConfigError, match=re.escape(f"{sweep_file}: point 'num_hedas=2': --config.models.sasrec."
                                                    f"model.num_hedas: no field")):
        expand(bad_key)
    with pytest.raises(ConfigError, match="the command line sets .'data.train_fraction'.. which the sweep varies"):
        expand(sweep, ["--config.data.train_fraction=0.3"])
    with pytest.raises(ConfigError, match="same id"):
        expand(Sweep(name="x", base=sweep.base, file=sweep.file, points=[{"data.path": "a/p"}, {"data.path": "b/p"}]))
    with pytest.raises(ConfigError, match="field 'base'"):
        expand(Sweep(name="x", base="configs/nope.py", file=sweep.file))
    with pytest.raises(ConfigError, match=re.escape(f"{sweep_file}: get_sweep() has no parameter 'sed'")):
        load_sweep(sweep_file, ["--sweep.sed=1"])
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigError, match=re.escape(f"{empty}: defines no get_sweep()")):
        load_sweep(empty)
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def get_sweep():\n    return {'name': 'x'}\n")
    with pytest.raises(ConfigError, match="returned dict, expected a jaxrec.sweep.Sweep"):
        load_sweep(wrong)
    code = _cli(["sweep", "--sweep", str(wrong), "--workdir", str(tmp_path / "w")])
    assert code == 2


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_resolves(path):
    """Each experiments/ file loads, and every point resolves to a config (nothing runs): a broken definition
    fails here."""
    sweep = load_sweep(path)
    assert sweep.description and sweep.base.startswith("configs/")
    points = expand(sweep)
    assert points and len({p.id for p in points}) == len(points)
    assert all(re.fullmatch(r"[A-Za-z0-9._=,+@-]+", p.id) for p in points)
    text = path.read_text()
    assert text.startswith('"""') and "jaxrec sweep --sweep experiments/" + path.name in text


def test_experiment_points_hold_the_documented_sizes():
    sizes = {p.id: p.config.models.tiger.model for p in expand(load_sweep(REPO_ROOT / "experiments/tiger_size.py"))}
    assert len(sizes) == 10
    assert [sizes["336K,seed=0"][k] for k in ("num_layers", "d_model", "num_heads", "d_kv", "d_ff")] == [1, 64, 3,
                                                                                                         64, 512]
    assert sizes["192M,seed=0"].num_layers == 20 and sizes["192M,seed=0"].d_model == 384
    cpu = expand(load_sweep(REPO_ROOT / "experiments/tiger_size_cpu.py"))
    assert len(cpu) == 8 and all(p.config.models.tiger.train.max_train_seconds > 0 for p in cpu)
    assert all(p.config.data.path == "../shared/data/amazon-beauty-2014" for p in cpu)
    llm = expand(load_sweep(REPO_ROOT / "experiments/llm_size.py", ["--sweep.checkpoints=/nowhere"]))
    assert llm[0].requires == ("/nowhere/Qwen3-0.6B",) and llm[0].missing() == ["/nowhere/Qwen3-0.6B"]


# ------------------------------------------------------------------------------------------------ launcher
def _cli(argv: list[str]) -> int:
    from jaxrec.cli import main

    return main(argv)


def _run_sweep(sweep_file: Path, workdir: Path, *extra: str, **options) -> tuple[int, str]:
    out = io.StringIO()
    params = [arg for arg in extra if arg.startswith("--sweep.")]
    overrides = [arg for arg in extra if not arg.startswith("--sweep.")]
    code = sweep_main(str(sweep_file), str(workdir), [*params, *overrides], Options(**options), out=out)
    return code, out.getvalue()


def test_launcher_runs_skips_records_failures_and_resumes(sweep_file, tmp_path):
    """Two points run two at a time, two more fail (3 heads do not divide hidden 8) without stopping the others;
    a second launch runs nothing; a point whose metrics.json is gone is rerun in its directory and its trainer
    resumes from the checkpoint; a changed command line is refused, then moved aside with --rerun-changed."""
    workdir = tmp_path / "sweep"
    code, out = _run_sweep(sweep_file, workdir, "--sweep.heads=(1, 3)", parallel=2)
    assert code == 1, out
    assert re.search(r"done  num_heads=1,train_fraction=0.5,seed=0 in \d+s: .*sasrec test/recall@10=0\.\d{4}", out)
    assert "FAILED num_heads=3,train_fraction=0.5,seed=0: exit code 1" in out
    rows = [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]
    assert rows == collect_results(workdir)
    assert len(rows) == 8 and all(tuple(row) == ROW_KEYS for row in rows)
    by = {(row["point"], row["model"]): row for row in rows}
    sasrec = by[("num_heads=1,train_fraction=0.5,seed=0", "sasrec")]
    assert sasrec["status"] == "finished" and sasrec["family"] == "sasrec" and sasrec["seed"] == 0
    assert sasrec["data_fraction"] == 0.5 and sasrec["workdir"] == "num_heads=1,train_fraction=0.5,seed=0"
    assert sasrec["overrides"] == {"models.sasrec.model.num_heads": 1, "data.train_fraction": 0.5,
                                   "models.sasrec.train.seed": 0}
    params = sasrec["parameters"]
    assert params["trainable"] > 0 and params["frozen"] == 0 and params["total"] == params["trainable"]
    assert params["components"] == {"recommender": params["trainable"]}
    assert {"validation/recall@10", "test/recall@10", "test/ndcg@10", "test/num_users"} <= set(sasrec["metrics"])
    assert sasrec["metrics"]["test/num_users"] == 200  # evaluation covers every user at any data fraction
    assert {"fit", "validation", "test", "total", "wall"} <= set(sasrec["seconds"])
    assert re.fullmatch(r".+ x\d+", sasrec["device"])
    assert sasrec["config"]["models"]["sasrec"]["train"]["seed"] == 0
    popularity = by[("num_heads=1,train_fraction=0.5,seed=0", "popularity")]
    assert popularity["parameters"] == {"trainable": 0, "frozen": 0, "total": 0, "components": {}}
    failed = by[("num_heads=3,train_fraction=0.5,seed=0", "sasrec")]
    assert failed["status"] == "failed" and failed["metrics"] == {}
    state = json.loads((workdir / failed["workdir"] / "sweep_point.json").read_text())
    assert state["exit_code"] == 1 and "num_heads" in Path(state["log"]).read_text()
    with (workdir / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 8 and table[0]["point"] == rows[0]["point"]
    assert {"parameters.components.recommender", "metrics.test/recall@10", "overrides.data.train_fraction",
            "config.models.sasrec.model.hidden"} <= set(table[0])

    # Second launch of the finished points (--only): nothing runs.
    code, out = _run_sweep(sweep_file, workdir, "--sweep.heads=(1, 3)", only="num_heads=1")
    assert code == 0 and "2 points, 2 finished, 0 to run" in out, out

    # An unfinished point (metrics.json gone) is rerun in place: the trainer resumes from its last checkpoint.
    point = workdir / "num_heads=1,train_fraction=1.0,seed=0"
    (point / "metrics.json").unlink()
    code, out = _run_sweep(sweep_file, workdir, "--sweep.heads=(1, 3)", only="num_heads=1,train_fraction=1.0")
    assert code == 0 and "1 to run" in out, out
    assert "resumed from step 4" in (point / "log.txt").read_text()
    assert (point / "metrics.json").exists()
    state = json.loads((point / "sweep_point.json").read_text())  # wall time spans both attempts
    assert state["attempts"] == 2 and state["seconds_total"] > state["seconds"] > 0
    row = next(row for row in collect_results(workdir) if row["point"] == point.name and row["model"] == "sasrec")
    assert row["seconds"]["wall"] == pytest.approx(state["seconds_total"])

    # A changed command line makes the finished directories stale: refused, then moved aside and rerun.
    with pytest.raises(ConfigError, match="hold runs of another config"):
        _run_sweep(sweep_file, workdir, "--sweep.heads=(1, 3)", "--config.eval.ks=(5, 20)", only="num_heads=1")
    code, out = _run_sweep(sweep_file, workdir, "--sweep.heads=(1, 3)", "--config.eval.ks=(5, 20)",
                           only="num_heads=1,train_fraction=1.0", rerun_changed=True, emit_commands="-")
    assert code == 0 and "--config.eval.ks=(5, 20)" in out, out
    assert next(iter((workdir / ".stale").iterdir())).name.startswith("num_heads=1,train_fraction=1.0,seed=0.")
    assert not point.exists()


def test_dry_run_and_emitted_commands(sweep_file, tmp_path):
    workdir = tmp_path / "sweep"
    code, out = _run_sweep(sweep_file, workdir, dry_run=True)
    assert code == 0 and not workdir.exists()
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["pending", "num_heads=1,train_fraction=0.5,seed=0"], ["pending", "num_heads=1,train_fraction=1.0,seed=0"]]
    script = tmp_path / "commands.sh"
    code, out = _run_sweep(sweep_file, workdir, "--config.eval.max_history=8", emit_commands=str(script))
    assert code == 0
    lines = [line for line in script.read_text().splitlines() if not line.startswith("#")]
    points = expand(load_sweep(sweep_file), ["--config.eval.max_history=8"])
    assert len(lines) == 2
    for line, point in zip(lines, points, strict=True):
        words = shlex.split(line)
        assert words[:3] == ["cd", str(Path.cwd()), "&&"]
        assert words[3:] == run_command(load_sweep(sweep_file), point, workdir, Options())
        assert words[3:6] == [sys.executable, "-m", "jaxrec"] and "--config.eval.max_history=8" in words
    assert json.loads((workdir / "sweep.json").read_text())["points"][0]["id"] == points[0].id
    assert f"--workdir {workdir} --config.eval.max_history=8 --collect" in script.read_text()
    # Multi-host: the process id and coordinator come from each host's environment.
    code, out = _run_sweep(sweep_file, workdir, emit_commands="-", hosts=4)
    line = next(line for line in out.splitlines() if not line.startswith("#"))
    assert line.endswith('--config.distributed.enabled=True --config.distributed.num_processes=4 '
                         '"--config.distributed.coordinator_address=${JAXREC_COORDINATOR:-}" '
                         '"--config.distributed.process_id=${JAXREC_PROCESS_ID:--1}"')
    words = shlex.split(line.replace("${JAXREC_PROCESS_ID:--1}", "2").replace("${JAXREC_COORDINATOR:-}", "h:1"))
    from jaxrec.config import load_config

    config = load_config(words[words.index("--config") + 1], [w for w in words if w.startswith("--config.")])
    assert config.distributed.process_id == 2 and config.distributed.num_processes == 4
    assert experiment_hash(config) == expand(load_sweep(sweep_file))[0].hash  # distributed is not hashed


def test_a_point_running_elsewhere_is_left_alone_and_collect_runs_nothing(sweep_file, tmp_path):
    """A point whose run lock another process holds (a scheduler job, another launcher) is reported busy, never
    started or recorded; --collect rebuilds the table without running anything and shows it as running."""
    workdir = tmp_path / "sweep"
    busy_point = workdir / "num_heads=1,train_fraction=0.5,seed=0"
    with hold_workdir(busy_point):
        code, out = _run_sweep(sweep_file, workdir, dry_run=True)
        assert out.split()[0] == "running", out
        code, out = _run_sweep(sweep_file, workdir)
        assert code == 0 and "1 ran, 0 failed, 1 busy in another process" in out, out
        assert f"busy {busy_point.name}: running in another process (pid {os.getpid()} on " in out
        assert not (busy_point / "sweep_point.json").exists() and not (busy_point / "metrics.json").exists()
        code, out = _run_sweep(sweep_file, workdir, collect=True)
        assert code == 0 and "2 points (1 finished, 1 running)" in out, out
        rows = [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]
        assert {row["point"]: row["status"] for row in rows} == {busy_point.name: "running",
                                                                 "num_heads=1,train_fraction=1.0,seed=0": "finished"}
    code, out = _run_sweep(sweep_file, workdir, collect=True)
    assert "2 points (1 finished, 1 pending)" in out and not (busy_point / "metrics.json").exists(), out
    with pytest.raises(ConfigError, match="is not a directory"):
        _run_sweep(sweep_file, tmp_path / "nowhere", collect=True)


def test_jaxrec_run_refuses_a_directory_in_use(sweep_file, tmp_path):
    """`jaxrec run` in a directory another process is running exits 75 naming the holder, before any work."""
    workdir = tmp_path / "run"
    with hold_workdir(workdir):
        assert holder(workdir)["pid"] == os.getpid()
        with pytest.raises(WorkdirBusy, match=f"in use by another jaxrec run \\(pid {os.getpid()} on "):
            with hold_workdir(workdir, wait_seconds=0.1):
                pass
        done = subprocess.run([sys.executable, "-m", "jaxrec", "run", "--config", str(tmp_path / "tiny_config.py"),
                               "--workdir", str(workdir)], capture_output=True, text=True, timeout=300)
        assert done.returncode == BUSY_EXIT_CODE, done.stderr
        assert f"is in use by another jaxrec run (pid {os.getpid()} on" in done.stderr
        assert not (workdir / "config.json").exists()
    assert holder(workdir) is None


def test_points_missing_their_inputs_fail_before_running(sweep_file, tmp_path):
    sweep_file.write_text(SWEEP.replace('common=', 'requires=("data.path",), common=').replace(
        '"data.train_fraction": [0.5, 1.0]', '"data.path": ["/nowhere/a"]'))
    code, out = _run_sweep(sweep_file, tmp_path / "sweep")
    assert code == 1 and "FAILED num_heads=1,path=a,seed=0: needs /nowhere/a (absent)" in out, out
    rows = collect_results(tmp_path / "sweep")
    assert [row["status"] for row in rows] == ["failed", "failed"]


# ------------------------------------------------------------------------------------------------ parameters
def test_parameter_counts_components():
    """Counts are of parameters: a family's Constant tables (tries, token tables) in the frozen state are none."""
    import ml_collections
    from flax import nnx

    from jaxrec.nn.layers import Constant

    trainable = nnx.State({"a": nnx.Param(np.zeros(3))})
    frozen = nnx.State({"b": nnx.Param(np.zeros((2, 5))), "tables": Constant(np.zeros(100, np.int32))})

    lora = ml_collections.ConfigDict({"model": {"mode": "lora"}})
    assert registry.parameter_counts("llm", lora, trainable, frozen) == {
        "trainable": 3, "frozen": 10, "total": 13, "components": {"lora": 3, "llm": 10}}
    counts = registry.parameter_counts("tiger", lora, trainable, None, {"sid_parameters": {"text_encoder": 7,
                                                                                          "quantizer": 2}})
    assert counts["components"] == {"recommender": 3, "text_encoder": 7, "quantizer": 2}
    assert registry.parameter_counts("popularity", lora)["total"] == 0


def test_flatten_row():
    assert flatten_row({"a": {"b": 1, "c": None}, "d": [1, 2], "o": {"x.y": 3}}) == {
        "a.b": 1, "a.c": "", "d": "[1, 2]", "o.x.y": 3}


def test_a_file_system_without_locks_runs_unguarded(tmp_path, monkeypatch, caplog):
    """Some network file systems answer flock with ENOLCK: the run goes on (with a warning), nothing is 'busy'."""
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    monkeypatch.setattr(run_lock, "_warned_no_locks", False)
    with hold_workdir(tmp_path):
        assert holder(tmp_path) is None
    assert "does not support locks" in caplog.text
