"""A user segmentation set: a folder with images/ and masks/ (same file stems; a mask is a PNG of
class indices, 255 = ignore) and optionally classes.txt (one name a line, background first)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlcli.errors import DataError, InputError

IGNORE_INDEX = 255  # mask value that is never scored (object borders, unlabelled pixels)

Sample = tuple[torch.Tensor, torch.Tensor]  # image (3, H, W) in [0, 1]; mask (H, W) int64


class MaskFolder:
    """images/ + masks/ (+ classes.txt): a user segmentation set, resized to `size` for training."""

    def __init__(self, root: Path, size: int) -> None:
        from dlcli.media import IMAGE_SUFFIXES

        root = Path(root).expanduser()
        img_dir, mask_dir = root / "images", root / "masks"
        if not img_dir.is_dir() or not mask_dir.is_dir():
            raise InputError(f"--data {root}: expected a folder with images/ and masks/ (or 'scenes')")
        masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() == ".png"}
        self.pairs = [(p, masks[p.stem]) for p in sorted(img_dir.iterdir())
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in masks]
        if not self.pairs:
            raise DataError(f"{root}: no image in images/ has a mask of the same name in masks/ (PNG)")
        self.size = int(size)
        names = root / "classes.txt"
        if names.is_file():
            self.classes = [ln.strip() for ln in names.read_text(encoding="utf-8").splitlines() if ln.strip()]
        else:
            top = 0
            for _, m in self.pairs:
                arr = self._mask(m)
                valid = arr[arr != IGNORE_INDEX]
                top = max(top, int(valid.max()) if valid.size else 0)
            self.classes = ["background"] + [f"class{i}" for i in range(1, top + 1)]
        if len(self.classes) < 2:
            raise DataError(f"{root}: need at least two classes (background and one more)")

    @staticmethod
    def _mask(path: Path) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise DataError(f"{path}: a mask must be a one-channel PNG of class indices (got mode {im.mode})")
            return np.asarray(im).astype(np.int64)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Sample:
        from PIL import Image

        from dlcli.media import load_image

        img_path, mask_path = self.pairs[i]
        img = load_image(str(img_path)).resize((self.size, self.size), Image.BILINEAR)
        mask = Image.fromarray(self._mask(mask_path).astype(np.uint8)).resize((self.size, self.size), Image.NEAREST)
        arr = np.asarray(mask).astype(np.int64)
        if int(arr[arr != IGNORE_INDEX].max(initial=0)) >= len(self.classes):
            raise DataError(f"{mask_path}: class index above the {len(self.classes)} classes of classes.txt")
        return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0), torch.from_numpy(arr)
