"""`jaxrec sweep`: run a sweep's points locally (N at a time, each `python -m jaxrec run` in its own directory), or
write one command per point for a cluster scheduler; then rebuild the results table.

A point is finished when its directory holds metrics.json of the very config the sweep now resolves to (the
experiment hash in its config.json); finished points are skipped. Others are (re)started in their directory: the
SID stage reuses its artifacts and the trainer resumes from its latest checkpoint. A directory holding a run of
another config (the sweep definition or the command-line overrides changed) is never silently reused: the launcher
stops with an error naming those points, unless `--rerun-changed` moves them aside (to `<workdir>/.stale/`).

Each `jaxrec run` holds its directory's lock (`jaxrec.run_lock`) while it runs, so a point that another process is
running (a scheduler job, a second launcher) is skipped and reported as busy, never started twice. `--collect` only
rebuilds the results table, e.g. after a scheduler ran the emitted commands.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import jaxrec
from jaxrec.config import ConfigError
from jaxrec.run_lock import BUSY_EXIT_CODE, describe, holder
from jaxrec.sweep import results
from jaxrec.sweep.spec import Point, Sweep, base_config_path, expand, load_sweep

STALE_FOLDER = ".stale"


@dataclasses.dataclass
class Options:
    parallel: int = 1
    only: str | None = None  # regular expression searched in point ids
    dry_run: bool = False
    collect: bool = False  # only rebuild results.jsonl / results.csv from the point directories
    emit_commands: str | None = None  # a file, or "-" for stdout
    hosts: int = 1  # processes per point for emitted multi-host commands
    rerun_changed: bool = False
    python: str = sys.executable


def sweep_main(sweep_file: str, workdir: str, extra: Sequence[str], options: Options,
               out: TextIO = sys.stdout) -> int:
    """The `jaxrec sweep` command: `extra` holds `--config.a.b=value` (every point) and `--sweep.name=value` (the
    sweep file's parameters). Returns the exit status (1 when a point failed; points busy in another process are
    reported, not failures)."""
    params = [arg for arg in extra if arg.startswith("--sweep.")]
    global_overrides = [arg for arg in extra if not arg.startswith("--sweep.")]
    bad = [arg for arg in global_overrides if not arg.startswith("--config.")]
    if bad:
        raise ConfigError(f"unrecognized arguments {bad}: expected --config.a.b=value or --sweep.name=value")
    sweep = load_sweep(sweep_file, params)
    every_point = points = expand(sweep, global_overrides)
    if options.only:
        try:
            pattern = re.compile(options.only)
        except re.error as error:
            raise ConfigError(f"--only {options.only!r}: not a regular expression ({error})") from None
        points = [point for point in points if pattern.search(point.id)]
        if not points:
            raise ConfigError(f"--only {options.only!r} matches no point of {sweep_file}")
    root = Path(workdir)
    statuses = {point.id: results.point_status(root / point.id, point.hash) for point in points}
    stale = [point.id for point in points if statuses[point.id] == "stale"]
    if options.dry_run:
        for point in points:
            print(f"{statuses[point.id]:>8}  {point.id}  {shlex.join(run_command(sweep, point, root, options))}",
                  file=out)
        return 0
    if options.collect:
        if not root.is_dir():
            raise ConfigError(f"--collect: {root} is not a directory (no sweep has run there)")
        write_manifest(root, sweep, every_point, global_overrides)
        return collect_only(sweep, points, statuses, root, out)
    if stale and not options.rerun_changed:
        raise ConfigError(f"{len(stale)} point directories under {root} hold runs of another config than the sweep "
                          f"now defines: {', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''}. Use another "
                          f"--workdir, or --rerun-changed to move them to {root / STALE_FOLDER} and run them again")
    root.mkdir(parents=True, exist_ok=True)
    write_manifest(root, sweep, every_point, global_overrides)
    for point_id in stale:
        _move_aside(root, point_id)
        statuses[point_id] = "pending"
    todo = [point for point in points if statuses[point.id] != "finished"]
    if options.emit_commands:
        emit_commands(sweep, todo, root, options, out, extra)
        return 0
    finished = len(points) - len(todo)
    print(f"sweep {sweep.name}: {len(points)} points, {finished} finished, {len(todo)} to run "
          f"({options.parallel} at a time) in {root}", file=out, flush=True)
    try:
        failures, busy = run_points(sweep, todo, root, options, out)
    except KeyboardInterrupt:
        print(f"sweep {sweep.name}: interrupted; the running points saved a checkpoint and resume when the same "
              f"command runs again", file=out, flush=True)
        return 130
    rows = results.collect_results(root)
    jsonl, table = results.write_results(root, rows)
    ran = len(todo) - len(failures) - len(busy)
    print(f"sweep {sweep.name}: {ran} ran, {len(failures)} failed, {len(busy)} busy in another process; results: "
          f"{jsonl}, {table}", file=out, flush=True)
    for point_id, message in failures:
        print(f"  FAILED {point_id}: {message}", file=out)
    for point_id, message in busy:
        print(f"  BUSY   {point_id}: {message}; collect it later with --collect", file=out)
    return 1 if failures else 0


def collect_only(sweep: Sweep, points: Sequence[Point], statuses: dict[str, str], root: Path, out: TextIO) -> int:
    """`--collect`: rebuild the results table and say how many points are in each state; runs nothing."""
    rows = results.collect_results(root)
    jsonl, table = results.write_results(root, rows)
    counts = {status: sum(1 for point in points if statuses[point.id] == status)
              for status in ("finished", "running", "failed", "pending", "stale")}
    summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    print(f"sweep {sweep.name}: {len(points)} points ({summary}); results: {jsonl}, {table}", file=out, flush=True)
    if counts["stale"]:
        print(f"  {counts['stale']} point directories hold runs of another config than the sweep now defines; their "
              f"rows are pending", file=out)
    return 0


def write_manifest(root: Path, sweep: Sweep, points: Sequence[Point], global_overrides: Sequence[str]) -> None:
    """`<workdir>/sweep.json`: what `collect_results` needs to list every point, run or not."""
    manifest = {
        "sweep": sweep.name, "file": str(Path(sweep.file).resolve()), "base": str(base_config_path(sweep)),
        "description": sweep.description, "cwd": os.getcwd(), "common": dict(sweep.common),
        "global_overrides": list(global_overrides), "seeds": list(sweep.seeds), "metric": sweep.metric,
        "points": [{"id": p.id, "overrides": p.overrides, "args": list(p.args), "hash": p.hash,
                    "config": json.loads(json.dumps(p.config.to_dict(), default=str))} for p in points],
    }
    (root / results.MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))


def _move_aside(root: Path, point_id: str) -> None:
    owner = holder(root / point_id)
    if owner is not None:
        raise ConfigError(f"{root / point_id}: another process is running this point of the earlier config "
                          f"({describe(owner)}); stop it before --rerun-changed moves it aside")
    target = root / STALE_FOLDER / f"{point_id}.{datetime.datetime.now():%Y%m%d-%H%M%S}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(root / point_id), str(target))


def run_command(sweep: Sweep, point: Point, root: Path, options: Options) -> list[str]:
    """The exact `jaxrec run` of a point (as `python -m jaxrec`, the launcher's interpreter)."""
    return [options.python, "-m", "jaxrec", "run", "--config", str(base_config_path(sweep)),
            "--workdir", str(root / point.id), *point.args]


def emit_commands(sweep: Sweep, points: Sequence[Point], root: Path, options: Options, out: TextIO,
                  extra: Sequence[str] = ()) -> None:
    """One shell line per point (`cd <here> && python -m jaxrec run ...`). With `hosts` > 1 each line is run once
    per host with JAXREC_PROCESS_ID (0..hosts-1) and JAXREC_COORDINATOR (host:port of process 0) in its
    environment; left unset, JAX detects them (SLURM, TPU pods)."""
    lines = [f"# jaxrec sweep {sweep.name}: {len(points)} unfinished points of {sweep.file}",
             (f"# written {datetime.datetime.now():%Y-%m-%d %H:%M}; results afterwards: jaxrec sweep --sweep "
              f"{shlex.join([sweep.file, '--workdir', str(root), *extra])} --collect")]
    multi = []
    if options.hosts > 1:
        lines.append(f"# multi-host: run each line on {options.hosts} hosts with JAXREC_PROCESS_ID=0..."
                     f"{options.hosts - 1} and JAXREC_COORDINATOR=<host of process 0>:<port> set (or let JAX "
                     f"detect them: SLURM, TPU pods)")
        multi = ["--config.distributed.enabled=True", f"--config.distributed.num_processes={options.hosts}",
                 '"--config.distributed.coordinator_address=${JAXREC_COORDINATOR:-}"',
                 '"--config.distributed.process_id=${JAXREC_PROCESS_ID:--1}"']
        for point in points:
            if "distributed" not in point.config:
                raise ConfigError(f"--hosts {options.hosts}: the base config {sweep.base} has no `distributed` group "
                                  f"(see jaxrec.train.defaults.distributed_config)")
    here = shlex.quote(os.getcwd())
    for point in points:
        command = shlex.join(run_command(sweep, point, root, options))
        lines.append(" ".join([f"cd {here} &&", command, *multi]))
    text = "\n".join(lines) + "\n"
    if options.emit_commands == "-":
        out.write(text)
    else:
        Path(options.emit_commands).write_text(text)
        print(f"wrote {len(points)} commands to {options.emit_commands}", file=out)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(jaxrec.__file__).resolve().parent.parent)  # the children import this very jaxrec
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    return env


@dataclasses.dataclass
class _Running:
    point: Point
    process: subprocess.Popen
    log: Any
    started: float
    number: int
    previous_state: dict[str, Any]  # sweep_point.json before this attempt, restored if the point proves busy


def run_points(sweep: Sweep, points: Sequence[Point], root: Path, options: Options, out: TextIO,
               poll_seconds: float = 0.2) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Run `points` as subprocesses, `options.parallel` at a time, each logging to `<point>/log.txt`; returns the
    failures and the points busy in another process, each as (point id, message). A failure is recorded
    (`sweep_point.json`) and does not stop the others; a busy point (its run lock held) is left alone. Ctrl-C (or
    SIGTERM to the launcher) sends SIGTERM to the running points (they save a checkpoint at the end of the step in
    hand) and waits for them."""
    env = _environment()
    if options.parallel > 1 and "XLA_PYTHON_CLIENT_PREALLOCATE" not in env:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # several points on one GPU share its memory
    queue = list(enumerate(points, 1))
    running: list[_Running] = []
    failures: list[tuple[str, str]] = []
    busy: list[tuple[str, str]] = []
    sweep_started = time.perf_counter()
    say: Callable[[str], None] = lambda text: print(
        f"[{time.perf_counter() - sweep_started:7.0f}s] {text}", file=out, flush=True)
    previous = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM to the launcher stops its points too
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while queue or running:
            while queue and len(running) < max(1, options.parallel):
                number, point = queue.pop(0)
                missing = point.missing()
                if missing:
                    message = f"needs {', '.join(missing)} (absent); provide it or leave the point out (--only)"
                    _record(root / point.id, point, "failed", None, None, 0.0)
                    failures.append((point.id, message))
                    say(f"({number}/{len(points)}) skip {point.id}: {message}")
                    continue
                owner = holder(root / point.id)
                if owner is not None:
                    busy.append((point.id, f"running in another process ({describe(owner)})"))
                    say(f"({number}/{len(points)}) busy {point.id}: {busy[-1][1]}; left alone")
                    continue
                running.append(_start(sweep, point, root, options, env, number))
                say(f"({number}/{len(points)}) start {point.id}")
            time.sleep(poll_seconds)
            for item in list(running):
                code = item.process.poll()
                if code is None:
                    continue
                running.remove(item)
                item.log.close()
                seconds = time.perf_counter() - item.started
                directory = root / item.point.id
                log = directory / "log.txt"
                if code == BUSY_EXIT_CODE:  # another process took the lock between the probe and the start
                    _write_state(directory, item.previous_state)
                    busy.append((item.point.id, f"running in another process; log: {log}"))
                    say(f"({item.number}/{len(points)}) busy {item.point.id}: {busy[-1][1]}")
                elif code == 0 and (directory / "metrics.json").exists():
                    _record(directory, item.point, "finished", code, log, seconds)
                    say(f"({item.number}/{len(points)}) done  {item.point.id} in {seconds:.0f}s: "
                        f"{_headline(directory, sweep.metric)}")
                else:
                    _record(directory, item.point, "failed", code, log, seconds)
                    message = f"exit code {code} after {seconds:.0f}s; log: {log}"
                    failures.append((item.point.id, message))
                    say(f"({item.number}/{len(points)}) FAILED {item.point.id}: {message}")
    except KeyboardInterrupt:
        for item in running:
            item.process.terminate()  # SIGTERM: the trainer saves its step and exits 143
        for item in running:
            item.process.wait()
            item.log.close()
            _record(root / item.point.id, item.point, "pending", item.process.returncode, root / item.point.id /
                    "log.txt", time.perf_counter() - item.started)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return failures, busy


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _start(sweep: Sweep, point: Point, root: Path, options: Options, env: dict[str, str],
           number: int) -> _Running:
    directory = root / point.id
    directory.mkdir(parents=True, exist_ok=True)
    command = run_command(sweep, point, root, options)
    log = (directory / "log.txt").open("a")
    log.write(f"=== jaxrec sweep {sweep.name}, {datetime.datetime.now():%Y-%m-%d %H:%M:%S}: {shlex.join(command)}\n")
    log.flush()
    previous_state = results.read_point_state(directory)
    _record(directory, point, "running", None, directory / "log.txt", None, command)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    return _Running(point, process, log, time.perf_counter(), number, previous_state)


def _record(directory: Path, point: Point, status: str, exit_code: int | None, log: Path | None,
            seconds: float | None, command: Sequence[str] | None = None) -> None:
    """`<point>/sweep_point.json`: the launcher's last attempt (status, exit code, log, wall seconds) and the wall
    seconds and number of all its ended attempts (`seconds_total`, `attempts`)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = results.read_point_state(directory)
    if seconds is not None:
        state["seconds_total"] = state.get("seconds_total", 0.0) + seconds
        state["attempts"] = state.get("attempts", 0) + 1
    state.update({"point": point.id, "status": status, "exit_code": exit_code, "log": str(log) if log else None,
                  "seconds": seconds, "hash": point.hash,
                  "updated": datetime.datetime.now().isoformat(timespec="seconds")})
    if command is not None:
        state["command"] = shlex.join(command)
    _write_state(directory, state)


def _write_state(directory: Path, state: dict[str, Any]) -> None:
    path = directory / results.POINT_STATE
    if state:
        path.write_text(json.dumps(state, indent=2))
    elif path.exists():
        path.unlink()


def _headline(directory: Path, metric: str) -> str:
    """`metric` ("<stage>/<name>") of every model in the point's metrics.json, e.g. "tiger test/recall@10=0.0412"."""
    metrics = json.loads((directory / "metrics.json").read_text())
    stage, name = metric.split("/", 1) if "/" in metric else ("test", metric)
    parts = [f"{model} {metric}={result[stage][name]:.4f}" for model, result in metrics.items()
             if name in result.get(stage, {})]
    return "; ".join(parts) or "(no " + metric + ")"
