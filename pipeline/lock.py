"""One run per folder: an exclusive lease on the work and output folders, for `mvid run` and `mvid stage`.

The lease is the file <folder>/.mvid.lock, created exclusively (O_EXCL), holding its holder: host, pid, the
process's start time, the run's start time and a random token. A thread touches the file every BEAT_S seconds. A
second run refuses to start, naming the holder, unless the holder is gone: on the same host, its process has
died (or its pid now belongs to another process); on another host (shared storage), it has not touched the file
for LEASE_S seconds. A lock taken over from a holder that comes back is lost: `check()` stops that run before it
writes the output."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path

import psutil

from mvid.pipeline.store import temp

log = logging.getLogger("mvid")
NAME = ".mvid.lock"
BEAT_S = 10.0
LEASE_S = 120.0  # a holder on another host that has not beaten for this long is gone (clock skew allowed)


class LockError(RuntimeError):
    """The folder is held by another live run, or this run lost its lock: one line; `mvid` exits 2."""


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def holder_text(h: dict) -> str:
    return f"host {h.get('host')}, pid {h.get('pid')}, started {h.get('started')}"


class Lock:
    def __init__(self, folder: Path, lease_s: float = LEASE_S, beat_s: float = BEAT_S):
        self.folder, self.path = Path(folder), Path(folder) / NAME
        self.lease_s, self.beat_s = lease_s, beat_s
        self.me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process_start": _started(os.getpid()),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "token": secrets.token_hex(8),
        }
        self.lost: dict | None = None
        self.stop = threading.Event()

    def read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # being written, or garbage: its age decides
            return {}

    def alive(self, h: dict) -> bool:
        if h.get("host") == self.me["host"] and h.get("pid"):
            started = _started(int(h["pid"]))
            return started is not None and abs(started - float(h.get("process_start") or 0)) < 1
        try:
            return time.time() - self.path.stat().st_mtime < self.lease_s
        except FileNotFoundError:
            return False

    def acquire(self) -> Lock:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                h = self.read()
                if h is None:
                    continue  # released meanwhile
                if self.alive(h):
                    raise LockError(
                        f"{self.folder} is in use by another mvid run ({holder_text(h)}; lock file {self.path}): "
                        f"wait for it to finish or stop it"
                    ) from None
                self.take_over(h)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
            threading.Thread(target=self.beat, daemon=True, name=f"mvid-lock-{self.folder.name}").start()
            return self
        raise LockError(f"{self.path}: could not take the lock (others keep taking it)")

    def take_over(self, h: dict) -> None:
        """Move a dead holder's lock aside; if it was replaced meanwhile by a live one, put that one back."""
        aside = temp(self.path)
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            got = json.loads(aside.read_text())
        except ValueError:
            got = {}
        if got.get("token") != h.get("token"):
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        else:
            log.warning("took over the lock on %s from %s, which is no longer running", self.folder, holder_text(h))
        aside.unlink()

    def beat(self) -> None:
        """Touch the lock while it is ours; note a loss (another run took it over) for check()."""
        while not self.stop.wait(self.beat_s):
            h = self.read()
            if not h or h.get("token") != self.me["token"]:
                self.lost = h or {"host": "?", "pid": "?", "started": "?"}
                return
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.path)

    def check(self) -> None:
        """Stop this run, with one line, when its lock was taken over."""
        if self.lost is not None:
            raise LockError(f"lost the lock on {self.folder} to another mvid run ({holder_text(self.lost)})")

    def release(self) -> None:
        self.stop.set()
        if (self.read() or {}).get("token") == self.me["token"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
