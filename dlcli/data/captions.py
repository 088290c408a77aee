"""Caption data sets: the seeded synthetic scene world (rendered in memory) and COCO-format caption
annotations with their image folder. Images come out as uint8 CHW at the model's size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from dlcli.errors import DataError, InputError
from dlcli.progress import NullReporter, Reporter

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)



class CaptionSet:
    """Images (uint8 CHW, already at the model's size) and their reference captions."""

    def __len__(self) -> int:
        raise NotImplementedError

    def image(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def captions(self, i: int) -> list[str]:
        raise NotImplementedError

    def images(self, idx: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.image(i) for i in idx])


SCENE_RENDER_SIZE = 128


class SceneCaptions(CaptionSet):
    """`n` scenes of the world `seed`, rendered once into memory at the world's native 128 pixels
    and, for another `size`, resized with antialiasing (the way the "nic" preset resizes a scene
    picture at inference, so training and `dl caption scene.png` see the same kind of pixels)."""

    def __init__(self, n: int, seed: int, size: int = 128, reporter: Reporter | None = None,
                 description: str = "scenes") -> None:
        from dlcli.data.scenes import make_scene

        if n < 1:
            raise InputError(f"need at least one scene, got {n}")
        reporter = reporter or NullReporter()
        reporter.start(f"rendering {n} {description} (seed {seed})", total=n)
        self.pixels = torch.empty((n, 3, size, size), dtype=torch.uint8)
        self._captions: list[str] = []
        for i in range(n):
            scene = make_scene(seed, i, size=SCENE_RENDER_SIZE)
            img = torch.from_numpy(scene.image).permute(2, 0, 1)
            if size != SCENE_RENDER_SIZE:
                img = torch.nn.functional.interpolate(img[None].float(), size=(size, size), mode="bilinear",
                                                      antialias=True, align_corners=False)[0]
                img = img.round().clamp(0, 255).to(torch.uint8)
            self.pixels[i] = img
            self._captions.append(scene.caption)
            if i % 100 == 99 or i == n - 1:
                reporter.advance(100 if i % 100 == 99 else (i % 100) + 1)
        reporter.finish()

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def image(self, i: int) -> torch.Tensor:
        return self.pixels[i]

    def images(self, idx: Sequence[int]) -> torch.Tensor:
        return self.pixels[torch.as_tensor(list(idx), dtype=torch.long)]

    def captions(self, i: int) -> list[str]:
        return [self._captions[i]]


class CocoCaptions(CaptionSet):
    """COCO caption annotations: every image with at least one caption, loaded from `images_dir`
    and squashed to size x size when asked for (the same resize the "nic" preset applies)."""

    def __init__(self, captions_file: Path, images_dir: Path, size: int, subset: Sequence[int] | None = None,
                 _records: list[tuple[str, list[str]]] | None = None) -> None:
        self.images_dir = Path(images_dir)
        self.size = size
        if _records is None:
            _records = read_coco_captions(Path(captions_file), self.images_dir)
        self.records = _records if subset is None else [_records[i] for i in subset]

    def split(self, val_fraction: float, seed: int) -> tuple["CocoCaptions", "CocoCaptions"]:
        n = len(self.records)
        n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        make = lambda idx: CocoCaptions(Path(), self.images_dir, self.size, idx, self.records)  # noqa: E731
        return make(order[n_val:]), make(order[:n_val])

    def __len__(self) -> int:
        return len(self.records)

    def image(self, i: int) -> torch.Tensor:
        from PIL import Image

        from dlcli.media import load_image

        img = load_image(str(self.images_dir / self.records[i][0])).resize((self.size, self.size), Image.BILINEAR)
        return torch.from_numpy(__import__("numpy").asarray(img).copy()).permute(2, 0, 1)

    def captions(self, i: int) -> list[str]:
        return self.records[i][1]


def read_coco_captions(path: Path, images_dir: Path) -> list[tuple[str, list[str]]]:
    """[(file_name, [caption, …]), …] from a COCO captions JSON, images sorted by id."""
    if not path.is_file():
        raise InputError(f"captions file {path} does not exist")
    if not images_dir.is_dir():
        raise InputError(f"images folder {images_dir} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
        caps: dict[int, list[str]] = {}
        for ann in data["annotations"]:
            caps.setdefault(int(ann["image_id"]), []).append(str(ann["caption"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not COCO caption annotations (need 'images' with id/file_name and "
                        f"'annotations' with image_id/caption): {exc}") from None
    records = [(files[i], caps[i]) for i in sorted(caps) if i in files]
    if not records:
        raise DataError(f"{path} holds no image with a caption")
    missing = [f for f, _ in records[:50] if not (images_dir / f).is_file()]
    if missing:
        raise DataError(f"images named in {path} are missing from {images_dir} (e.g. {missing[0]})")
    return records


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, ImageNet mean/std (what the "nic" preset does at inference)."""
    mean = torch.tensor(MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std
