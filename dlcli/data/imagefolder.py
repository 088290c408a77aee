"""ImageFolder-style data sets: DATA_DIR/<class>/<image>, one subfolder per class.

Images are read through dlcli.media (EXIF, modes, size limits), so an unreadable file is a clear
DataError naming it rather than a crash in a worker process. The split into training and
validation images is stratified per class and fixed by a seed, so a resumed run sees the same split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from dlcli.errors import DataError
from dlcli.media import IMAGE_SUFFIXES


@dataclass(frozen=True)
class FolderIndex:
    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[str, int], ...]  # (path, class index), sorted


def scan(root: str | Path) -> FolderIndex:
    """List the classes (sorted subfolder names) and their images. Needs at least two classes,
    each with at least one image."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give a folder with one subfolder of images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    samples: list[tuple[str, int]] = []
    empty: list[str] = []
    for idx, name in enumerate(classes):
        files = sorted(str(p) for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            empty.append(name)
        samples.extend((f, idx) for f in files)
    if empty:
        raise DataError(f"{root}: class folder(s) without images: {', '.join(empty[:5])}")
    if len(classes) < 2:
        raise DataError(f"{root} holds {len(classes)} class folder(s); a classifier needs at least two "
                        "(DATA_DIR/<class>/<image>)")
    return FolderIndex(root, tuple(classes), tuple(samples))


def split(index: FolderIndex, val_fraction: float, seed: int = 0) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Stratified split: round(val_fraction * n) images of each class (at least one when the class
    has two or more and val_fraction > 0) go to validation."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"--val-split must be in [0, 1) (got {val_fraction})")
    rng = random.Random(seed)
    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    for c in range(len(index.classes)):
        items = [s for s in index.samples if s[1] == c]
        rng.shuffle(items)
        n_val = round(val_fraction * len(items))
        if val_fraction > 0 and n_val == 0 and len(items) >= 2:
            n_val = 1
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val


class ImageListDataset:
    """(path, label) pairs -> (tensor, label) through a PIL transform; a torch Dataset by protocol."""

    def __init__(self, samples: Sequence[tuple[str, int]], transform: Callable[[Any], Any], mode: str = "RGB") -> None:
        self.samples = list(samples)
        self.transform = transform
        self.mode = mode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from dlcli.errors import InputError
        from dlcli.media import load_image

        path, label = self.samples[i]
        try:
            image = load_image(path, mode=self.mode)
        except InputError as exc:
            raise DataError(f"training image unreadable: {exc.message}; remove or fix it") from None
        return self.transform(image), label
