"""A lock file that stops a second writer of the same folder with one line naming the process that
holds it. A lock left by a process that is gone (kill -9, a crash) is noticed and taken over."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from mumo.errors import MumoError


class Lock:
    """`with Lock(path, what):` holds `path` (created with O_EXCL) for as long as the block runs."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self.held = False

    def __enter__(self) -> Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.time(),
                "command": sys.argv[:6],
            }
        ).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._stale():
                    self.path.unlink(missing_ok=True)  # its writer is gone: take it over
                    continue
                raise MumoError(self._held_message()) from None
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            self.held = True
            return self
        raise MumoError(self._held_message())

    def check(self) -> None:
        """Raise now (without taking the lock) if a live process holds it."""
        if self.path.exists() and not self._stale():
            raise MumoError(self._held_message())

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def _holder(self) -> dict[str, object]:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def _stale(self) -> bool:
        """Held by a process of this machine that no longer runs (or a lock file we cannot read that is
        older than a minute: a writer died between creating and filling it)."""
        holder = self._holder()
        if not holder:
            try:
                return time.time() - self.path.stat().st_mtime > 60
            except OSError:
                return True
        if holder.get("host") != socket.gethostname():
            return False  # another machine's process: we cannot tell, so we do not take it
        return not _alive(int(holder.get("pid", 0)))  # type: ignore[call-overload]

    def _held_message(self) -> str:
        holder = self._holder()
        pid, host = holder.get("pid", "?"), holder.get("host", "?")
        started = holder.get("started")
        when = time.strftime(" since %H:%M:%S", time.localtime(float(started))) if started else ""  # type: ignore[arg-type]
        return (
            f"{self.what}: another mumo (pid {pid} on {host}{when}) is writing it; wait for it to finish "
            f"or choose another --out (if no such process runs, delete {self.path})"
        )


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
