"""Files that are never half-written, and folders that one process at a time may write into.

* :func:`atomic_write` (and ``_bytes``/``_text``/``save_torch``): write a temporary file in the target's
  folder, flush and ``fsync`` it, rename it over the target, then ``fsync`` the folder. A reader sees the
  old file or the new one, never a mix: after a killed process (the rename is atomic) and after a power
  cut (the data reach the disk before the rename, and the rename itself is made durable).
* :class:`FolderLock`: an exclusive ``fcntl.flock`` on ``<folder>/<name>``. The kernel drops it when the
  process ends however it ends, so a lock file left by a killed run is never "stale": the next run simply
  takes it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import tempfile
from typing import BinaryIO, Callable, Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock; FolderLock falls back to O_EXCL below
    fcntl = None


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename or a new file in ``folder`` durable (best effort: not every OS opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """``with atomic_open(path) as f: f.write(...)``: ``path`` appears, complete, only if the block ends
    without an exception; otherwise the temporary file is removed and ``path`` is untouched."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> pathlib.Path:
    """Call ``write(f)`` on a binary file that becomes ``path`` atomically and durably."""
    with atomic_open(path) as f:
        write(f)
    return pathlib.Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> pathlib.Path:
    return atomic_write(path, lambda f: f.write(text.encode(encoding)))


def atomic_save_torch(path: str | os.PathLike, obj) -> pathlib.Path:
    import torch
    return atomic_write(path, lambda f: torch.save(obj, f))


class FolderLock:
    """An exclusive, non-blocking lock on a folder: ``with FolderLock(out, what="training run"): ...``.

    Taking a lock that another process holds raises ValueError naming the folder and that process. The
    lock file holds the owner's pid and host, for that message only; the lock itself is the kernel's
    ``flock``, released when the process ends, so a killed run leaves nothing to clean up by hand.
    """

    def __init__(self, folder: str | os.PathLike, name: str = ".lock", what: str = "run") -> None:
        self.path = pathlib.Path(folder) / name
        self.what = what
        self._fd: int | None = None

    def _owner(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown process"
        except OSError:
            return "unknown process"

    def _busy(self) -> ValueError:
        return ValueError(f"{self.path.parent} is in use by another {self.what} ({self._owner()}; lock file "
                          f"{self.path}); wait for it to finish or choose another folder")

    def acquire(self) -> "FolderLock":
        if fcntl is None:
            return self._acquire_excl()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy() from None
            # The holder before us may have unlinked the file between our open and our flock: then we
            # hold a lock on a file nobody else will open. Retry on the file now at the path.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def _acquire_excl(self) -> "FolderLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise self._busy() from None
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)   # while still locked, so no one else's lock file is removed
        os.close(self._fd)                  # closing the descriptor drops the flock
        self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
