"""Owner locks: a folder (a checkpoint directory, a run name) used by one live process at a time.

The lock is `fcntl.flock` on a file that also holds the owner's pid, host and purpose. The kernel
releases a flock when its process ends however it ends (`kill -9` included), so a lock left by a
dead run is simply taken over by the next one, with no pid to probe and no pid-reuse race; the
pid in the file is there for the one-line refusal, which says who holds it. flock works across
processes of one host and, on Linux, on NFS (emulated with byte-range locks).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from components.shared.errors import UserError


@contextlib.contextmanager
def owned(lock_file: Path, what: str, fix: str) -> Iterator[None]:
    """Hold `lock_file` for the block, or fail with one line naming `what`, its owner and `fix`."""
    fd = acquire(lock_file, what, fix)
    try:
        yield
    finally:
        os.close(fd)  # releases the flock; the file may stay (the next owner reuses it)


def acquire(lock_file: Path, what: str, fix: str) -> int:
    """Take the lock; return its file descriptor (closing it releases the lock)."""
    lock_file = Path(lock_file)
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    except OSError as exc:
        raise UserError(f"cannot create the lock file {lock_file} ({exc.strerror}): make {lock_file.parent} writable") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read(fd)
        os.close(fd)
        raise UserError(f"{what} is in use by a live run (pid {owner.get('pid', '?')} on {owner.get('host', '?')}): {fix}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": what, "since": time.time()}).encode(), 0)
    return fd


def _read(fd: int) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    return {}
