"""Atomic file output: a reader never sees a half-written file, and nothing is overwritten by
accident."""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from dlcli.errors import InputError


@functools.lru_cache(maxsize=1)
def _new_file_mode() -> int:
    """The mode `open()` would give a new file under this process's umask (read once: setting
    the umask is the only way to read it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path`, on any error
    (Ctrl-C included) it is removed. The result gets the permissions of the file it replaces, or
    of any new file under the umask (mkstemp's private 0600 would otherwise leak through)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else _new_file_mode()
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def check_writable(path: Path, force: bool) -> Path:
    """Refuse to replace an existing output unless --force was given."""
    path = Path(path).expanduser()
    if path.exists() and not force:
        raise InputError(f"{path} already exists; pass --force to overwrite it or choose another --out")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file name")
    return path


@contextlib.contextmanager
def atomic_output(path: Path, force: bool = False) -> Iterator[Path]:
    """check_writable + atomic_target: the way commands write their output files."""
    with atomic_target(check_writable(path, force)) as tmp:
        yield tmp
