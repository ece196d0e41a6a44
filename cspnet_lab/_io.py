"""Files that are never half-written, and folders that one process at a time may write into.

* :func:`atomic_write` (and ``_bytes``/``_text``/``save_torch``): write a temporary file in the target's
  folder, flush and ``fsync`` it, rename it over the target, then ``fsync`` the folder. A reader sees the
  old file or the new one, never a mix: after a killed process (the rename is atomic) and after a power
  cut (the data reach the disk before the rename, and the rename itself is made durable).
  The file gets the permissions ``open()`` would give it: an existing target keeps its mode, a new one
  gets ``0o666`` less the process's umask (``0o644`` under the usual umask 022), not ``mkstemp``'s ``0o600``.
  A failed write (a full disk, ``EFBIG`` under ``ulimit -f``, an exception in the caller) removes the
  temporary file and leaves the target exactly as it was.
* :class:`FolderLock`: an exclusive ``fcntl.flock`` on ``<folder>/<name>``. The kernel drops it when the
  process ends however it ends, so a lock file left by a killed run is never "stale": the next run simply
  takes it. ``subject`` names what is guarded in the refusal (a folder, or one result file).
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


def _umask() -> int:
    """The process's umask. Linux shows it in /proc/self/status; elsewhere it is read by setting it and
    putting it back (there is no call that only reads it)."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(path: pathlib.Path) -> int:
    """The permission bits ``open(path, "w")`` would leave: the existing file's, else 0o666 less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


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
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)   # not mkstemp's 0o600: a shared result file stays readable
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

    def __init__(self, folder: str | os.PathLike, name: str = ".lock", what: str = "run",
                 subject: str | os.PathLike | None = None) -> None:
        self.path = pathlib.Path(folder) / name
        self.what = what
        self.subject = str(subject) if subject is not None else str(self.path.parent)
        self._fd: int | None = None

    def _owner(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown process"
        except OSError:
            return "unknown process"

    def _busy(self) -> ValueError:
        other = "folder" if self.subject == str(self.path.parent) else "file"
        return ValueError(f"{self.subject} is in use by another {self.what} ({self._owner()}; lock file "
                          f"{self.path}); wait for it to finish or choose another {other}")

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
