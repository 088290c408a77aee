"""MNIST from its IDX files: plain or gzip, in a folder of its own or in torchvision's
`MNIST/raw/` layout; found through `--data DIR`, else `$DL_DATA`, else torchvision's download
(online only).

Public API (also used by the DCGAN trainer):
    load_mnist(root, split) -> (images uint8 [N, 28, 28], labels int64 [N])
    find_mnist(data=None, offline=False, reporter=None) -> Path of the folder holding the files
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import torch

from dlcli.errors import DataError, NetworkError
from dlcli.progress import Reporter

SPLITS = ("train", "test")
# File stems per split as LeCun published them (torchvision keeps these names under MNIST/raw).
_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX magic: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
_MAGIC_IMAGES = 0x00000803
_MAGIC_LABELS = 0x00000801
SIZES = {"train": 60000, "test": 10000}
ENV_VAR = "DL_DATA"


def _variants(stem: str) -> list[str]:
    # Some mirrors write "train-images.idx3-ubyte"; accept both spellings, plain or gzipped.
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in _variants(stem):
        p = folder / name
        if p.is_file():
            return p
    return None


def _candidates(root: Path) -> list[Path]:
    """The folder itself, then torchvision's layouts below it (root/raw, root/MNIST/raw)."""
    return [root, root / "raw", root / "MNIST" / "raw"]


def locate(root: str | Path) -> Path | None:
    """The folder under `root` that holds all four MNIST files, or None."""
    root = Path(root).expanduser()
    for folder in _candidates(root):
        if all(_find_file(folder, s) is not None for stems in _STEMS.values() for s in stems):
            return folder
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open  # sniff, do not trust the suffix
        with opener(path, "rb") as f:  # type: ignore[operator]
            return f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read MNIST file {path}: {exc}; download it again") from None


def parse_idx(data: bytes, *, expect_magic: int, source: str = "IDX data") -> torch.Tensor:
    """Parse an IDX buffer of unsigned bytes into a uint8 tensor of its declared shape. A wrong
    magic number, a header that does not fit, or a truncated body is a DataError."""
    if len(data) < 4:
        raise DataError(f"{source} is too short to be an IDX file ({len(data)} bytes)")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expect_magic:
        raise DataError(
            f"{source} has magic number 0x{magic:08x}, expected 0x{expect_magic:08x}: it is not an MNIST "
            f"{'image' if expect_magic == _MAGIC_IMAGES else 'label'} file"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source} is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = 1
    for d in dims:
        count *= d
    if len(data) - header < count:
        raise DataError(
            f"{source} is truncated: its header promises {count} bytes of data {tuple(dims)}, "
            f"the file holds {len(data) - header}; download it again"
        )
    if len(data) - header > count:
        raise DataError(f"{source} has {len(data) - header - count} bytes beyond its declared shape {tuple(dims)}")
    arr = torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8)
    return arr.reshape(*dims)


def load_mnist(root: str | Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8, N x 28 x 28, 0 = background, 255 = ink) and labels (int64, N) of one split
    ("train" or "test") from the folder `root` (or its `raw/`, `MNIST/raw/` subfolder)."""
    if split not in SPLITS:
        raise DataError(f"unknown MNIST split {split!r}: use 'train' or 'test'")
    folder = locate(root)
    if folder is None:
        raise DataError(
            f"no MNIST files in {root} (looked for {', '.join(_STEMS[split])}, plain or .gz, also in "
            "raw/ and MNIST/raw/)"
        )
    img_stem, lab_stem = _STEMS[split]
    img_path, lab_path = _find_file(folder, img_stem), _find_file(folder, lab_stem)
    assert img_path is not None and lab_path is not None
    images = parse_idx(_read_bytes(img_path), expect_magic=_MAGIC_IMAGES, source=str(img_path))
    labels = parse_idx(_read_bytes(lab_path), expect_magic=_MAGIC_LABELS, source=str(lab_path))
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DataError(f"{img_path} holds images of shape {tuple(images.shape[1:])}, not 28x28")
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{lab_path} has {labels.shape[0]} labels for {images.shape[0]} images")
    labels = labels.long()
    if int(labels.max()) > 9:
        raise DataError(f"{lab_path} holds labels above 9; it is not MNIST")
    return images, labels


def file_hashes(root: str | Path) -> dict[str, str]:
    """SHA-256 of the four files (as stored), recorded beside trained weights."""
    folder = locate(root)
    out: dict[str, str] = {}
    if folder is None:
        return out
    for stems in _STEMS.values():
        for stem in stems:
            p = _find_file(folder, stem)
            if p is not None:
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                out[p.name] = h.hexdigest()
    return out


def _download(dest: Path, reporter: Reporter | None = None) -> Path:
    """torchvision's MNIST download into dest/MNIST/raw (verified by torchvision's md5s)."""
    try:
        from torchvision.datasets import MNIST
    except ImportError:  # pragma: no cover - torchvision is a dependency
        raise DataError("torchvision is needed to download MNIST; pass --data DIR instead") from None
    if reporter is not None:
        reporter.message(f"downloading MNIST into {dest} (about 11 MB) ...")
    try:
        # torchvision draws its own tqdm progress bar on stderr while downloading.
        MNIST(root=str(dest), train=True, download=True)
        MNIST(root=str(dest), train=False, download=True)
    except Exception as exc:  # urllib / http errors, md5 mismatch
        raise NetworkError(
            f"MNIST download failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "download the four IDX files yourself and pass --data DIR"
        ) from None
    found = locate(dest)
    if found is None:
        raise DataError(f"MNIST download into {dest} left no usable files; pass --data DIR")
    return found


def default_download_dir() -> Path:
    from dlcli.weights.store import dl_home

    return dl_home() / "data"


def find_mnist(data: str | Path | None = None, *, offline: bool = False, reporter: Reporter | None = None) -> Path:
    """The folder holding the MNIST files: `data`, else $DL_DATA, else an earlier download in
    $DL_HOME/data, else torchvision's download (refused offline, with how to get the data)."""
    if data is not None:
        found = locate(data)
        if found is None:
            if not Path(data).expanduser().exists():
                raise DataError(f"--data {data} does not exist")
            raise DataError(
                f"no MNIST IDX files in {data} (expected train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, plain or .gz, there or in MNIST/raw/)"
            )
        return found
    env = os.environ.get(ENV_VAR)
    if env:
        found = locate(env)
        if found is None:
            raise DataError(f"${ENV_VAR}={env} holds no MNIST IDX files; fix it or pass --data DIR")
        return found
    cache = default_download_dir()
    found = locate(cache)
    if found is not None:
        return found
    from dlcli.weights.store import offline_mode

    if offline_mode(offline):
        raise DataError(
            "no MNIST data: pass --data DIR (a folder with the four IDX files, plain or .gz), set "
            f"${ENV_VAR}, or run once without --offline to download it into {cache}"
        )
    return _download(cache, reporter)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 28 x 28 -> float N x 1 x 28 x 28 in [0, 1] (the book's normalisation)."""
    return images.unsqueeze(1).float().div_(255.0)
