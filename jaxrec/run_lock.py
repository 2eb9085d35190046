"""One `jaxrec run` per run directory: an advisory lock on `<workdir>/.jaxrec.lock`, held for the whole run.

Two processes running in one directory would interleave their checkpoints and overwrite each other's metrics. That
happens when a sweep point is started twice: by a local `jaxrec sweep` and a scheduler job, or by two launchers on
one workdir. The lock is the operating system's (`fcntl.flock`), so it is released when its process ends, however it
ends; the file's text (pid, host, start time) only names the holder in messages. flock is per host on many network
file systems: a multi-host run takes it in process 0 only. Where the file system has no locks at all (some Lustre
or NFS mounts answer ENOLCK / ENOSYS), runs go on unguarded, with a warning.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

logger = logging.getLogger(__name__)

LOCK_FILE = ".jaxrec.lock"
_warned_no_locks = False  # the warning about a file system without locks is given once per process
BUSY_EXIT_CODE = 75  # EX_TEMPFAIL: what `jaxrec run` exits with when its directory is in use (the launcher skips it)


class WorkdirBusy(RuntimeError):
    """Another process holds the run directory's lock."""


@contextlib.contextmanager
def hold_workdir(workdir: str | Path, wait_seconds: float = 2.0) -> Iterator[None]:
    """Hold `workdir`'s lock for the `with` block; raises `WorkdirBusy` naming the holder when another process keeps
    it for `wait_seconds` (a launcher's `holder` probe holds it for microseconds)."""
    path = Path(workdir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    deadline = time.monotonic() + wait_seconds
    while not _try_lock(handle):
        if time.monotonic() >= deadline:
            handle.close()
            raise WorkdirBusy(f"{workdir} is in use by another jaxrec run ({describe(_read(path))}); wait for it to "
                              f"end or stop it, or use another --workdir")
        time.sleep(0.05)
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": datetime.datetime.now().isoformat(timespec="seconds")}))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def holder(workdir: str | Path) -> dict[str, Any] | None:
    """Who holds `workdir`'s lock ({"pid", "host", "since"}, or {} when its text is unreadable), or None when free."""
    path = Path(workdir) / LOCK_FILE
    try:
        handle = path.open("r")  # read-only: flock needs no write access (a sweep collected from a read-only copy)
    except FileNotFoundError:
        return None
    with handle:
        if _try_lock(handle):
            return None  # closing the handle releases it again
    return _read(path)


def describe(owner: dict[str, Any] | None) -> str:
    """"pid 123 on host-a since 2026-11-23T10:00:00" (or "holder unknown")."""
    if not owner:
        return "holder unknown"
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} since {owner.get('since', '?')}"


def _try_lock(handle: TextIO) -> bool:
    """Take the lock if free; True also where the file system cannot lock (nothing to guard with)."""
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:  # no locks on this file system
        global _warned_no_locks
        if not _warned_no_locks:  # once per process: a sweep probes every point
            _warned_no_locks = True
            logger.warning(f"{handle.name}: the file system does not support locks ({error}); nothing keeps a "
                           f"second run out of a run directory")
    return True


def _read(path: Path) -> dict[str, Any]:
    try:
        owner = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}
