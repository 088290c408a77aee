"""Atomic file output: a reader never sees a half-written file, and nothing is overwritten by
accident. Also the advisory lock that serialises read-modify-write of our index files.

Temporary files are named `.<stem>.<pid>-<random>.part<suffix>` beside their target: a run that
was killed (SIGKILL, power loss) leaves one behind, and the next write into that folder removes
those whose process is gone. Files of any other naming are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import stat
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from dlcli.errors import InputError

_PART = re.compile(r"^\..*\.(\d+)-[A-Za-z0-9_]+\.part(\.[^/]*)?$")


@functools.lru_cache(maxsize=1)
def _new_file_mode() -> int:
    """The mode `open()` would give a new file under this process's umask (read once: setting
    the umask is the only way to read it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def process_alive(pid: object) -> bool:
    """Whether a process with this id runs (ours, or someone else's we may not signal)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's live process: not ours to judge
    return True


def clean_stale_parts(folder: Path) -> list[Path]:
    """Remove `.part` files of our own naming in `folder` whose writing process no longer runs."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _PART.match(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        if not process_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _cannot_write(path: Path, exc: OSError) -> InputError:
    return InputError(f"cannot write {path}: {exc.strerror or exc}; choose another output path")


def check_parent(path: Path, shown: Path | None = None) -> None:
    """The folder `path` would be written into is a folder (or can be created) and is writable;
    else an InputError naming the path (`shown`, default `path`; exit 2), raised before any work
    is done."""
    parent = Path(path).parent
    path = shown if shown is not None else path
    probe = parent
    while not probe.exists():
        if probe.is_symlink():  # a dangling link where a folder is wanted
            raise InputError(f"cannot write {path}: {probe} is a broken link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"cannot write {path}: {probe} is not a folder")
    # Try it (os.access says yes to root on a read-only file system): a probe file, removed at once.
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".dl-probe.{os.getpid()}-", suffix=".part", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {probe} is not writable ({exc.strerror or exc})") from None


def check_writable(path: Path, force: bool) -> Path:
    """Refuse to replace an existing output unless --force was given, and refuse an output whose
    folder cannot be written (both before the work, not after)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file name")
    if (path.exists() or path.is_symlink()) and not force:
        raise InputError(f"{path} already exists; pass --force to overwrite it or choose another --out")
    if path.exists() and not path.is_file():
        raise InputError(f"{path} is not a regular file; choose another output path")
    check_parent(path)
    return path


def check_output_dir(folder: Path) -> Path:
    """An output folder (--out DIR): it is a folder or can be created, and can be written."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {folder} is a file, not a folder; give a folder for the outputs")
    check_parent(folder / "x", shown=folder)
    return folder


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path`, on any error
    (Ctrl-C included) it is removed. The result gets the permissions of the file it replaces, or
    of any new file under the umask (mkstemp's private 0600 would otherwise leak through).
    Failing to create the folder or the file is an InputError naming the path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_parts(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}-", suffix=f".part{path.suffix}",
                                   dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else _new_file_mode()
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR,
                         errno.ENOTDIR, errno.EFBIG) and exc.filename in (None, str(tmp_path), str(path)):
            raise _cannot_write(path, exc) from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_output(path: Path, force: bool = False) -> Iterator[Path]:
    """check_writable + atomic_target: the way commands write their output files."""
    with atomic_target(check_writable(path, force)) as tmp:
        yield tmp


_held: dict[str, int] = {}  # lock path -> nesting depth in this process
_held_guard = threading.RLock()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (fcntl.flock) on `path` (created if needed) for the duration:
    two processes importing or removing weights at once take turns on the index instead of both
    reading the old one. Re-entrant within a process (a second flock on a new descriptor would wait
    for ourselves). Where fcntl does not exist (Windows) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = Path(path)
    key = str(path.absolute())
    with _held_guard:
        if _held.get(key):
            _held[key] += 1
            try:
                yield
            finally:
                _held[key] -= 1
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _cannot_write(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _held[key] = 1
            yield
        finally:
            _held.pop(key, None)
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def regular_file_stat(path: Path, what: str, *, kind: str = "file") -> os.stat_result:
    """stat() of a file a user named, refusing what cannot be read as one: missing, a folder, a
    device, FIFO or socket (a FIFO would block the reader). `kind` names what was expected."""
    import stat

    from dlcli.errors import InputError

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what}: no such file") from None
    except OSError as exc:
        raise InputError(f"{what}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what}: is a folder, not a {kind}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what}: not a regular file (a device, pipe or socket); save it to a file first")
    return st
