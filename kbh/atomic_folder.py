"""Folders that appear only when complete: written under a staging name beside the target, then renamed.

`staged_folder(target)` yields `.NAME.staging-XXXX`; on success it replaces `target` in one atomic exchange
(Linux renameat2 RENAME_EXCHANGE) or, where the file system lacks that, with two renames that `recover` undoes
if a kill falls between them. On failure the staging folder is removed. Callers decide whether `target` may be
replaced (a split's `--overwrite`, a previous export) before they start.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from .errors import KbhError
from .atomic_file import DIR_MODE, write_error


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def writer_lock(target: str | Path, command: str = "kbh"):
    """Hold the target's writer lock (`.NAME.lock` beside it, an flock that dies with its process), or fail at
    once with a one-line error if another process holds it."""
    target = resolved(target)
    path = lock_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise (write_error(path, e) or KbhError(f"{path}: cannot open the split lock ({e.strerror})")) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            raise KbhError(f"{target}: another {command} is writing this folder{holder} (lock {path.name}); "
                           f"wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f" (process {pid})"
    return ""


def resolved(target: str | Path) -> Path:
    """The folder a path names: a symbolic link is followed, so its target is what gets replaced."""
    target = Path(target)
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def _staging_prefix(target: Path) -> str:
    return f".{target.name}.staging-"


def _old_prefix(target: Path) -> str:
    return f".{target.name}.old-"


def recover(target: Path) -> list[str]:
    """Undo what a killed writer left beside `target` (call as its only writer): a folder swapped out but not
    replaced comes back; staging folders and swapped-out folders are removed. Returns what was done."""
    done = []
    parent = target.parent
    if not parent.is_dir():
        return done
    olds = sorted(p for p in parent.iterdir() if p.name.startswith(_old_prefix(target)))
    if not target.exists() and olds:
        os.rename(olds[-1], target)  # the fallback publish died between its two renames
        done.append(f"restored the previous {target.name} from {olds[-1].name}")
        olds = olds[:-1]
    for p in [*olds, *(p for p in parent.iterdir() if p.name.startswith(_staging_prefix(target)))]:
        shutil.rmtree(p, ignore_errors=True)
        done.append(f"removed {p.name}, left by an interrupted run")
    return done


@contextlib.contextmanager
def staged_folder(target: str | Path):
    """Yield a staging folder; on success it becomes `target` (replacing what is there), else it is removed."""
    target = resolved(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), dir=target.parent))
        os.chmod(staging, DIR_MODE)  # mkdtemp's 0700 would hide it from a lab's shared folder
    except OSError as e:
        raise (write_error(target.parent, e) or KbhError(f"{target.parent}: {e.strerror}")) from None
    try:
        yield staging
        _fsync_dir(staging)
        _publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish(staging: Path, target: Path) -> None:
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the old folder
    else:
        old = Path(tempfile.mkdtemp(prefix=_old_prefix(target), dir=target.parent))
        old.rmdir()
        os.rename(target, old)
        os.rename(staging, target)  # a kill between the two renames is undone by `recover`
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where it is not available."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
