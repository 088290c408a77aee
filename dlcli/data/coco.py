"""COCO-format detection data: an annotations JSON (images, annotations with xywh bbox and
category_id, categories) and its image folder.

Targets keep every annotation as COCOeval does: crowd annotations come with `iscrowd` set (the
evaluator treats them as ignore regions), boxes of a pixel or less stay (a missed ground truth),
and `area` is the file's own field (the object's area, which sorts it into small / medium / large),
or the box's when the file has none. Training wants less: `trainable()` drops what a detector
cannot learn from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlcli.errors import DataError, InputError

Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]


class CocoDetection:
    """A COCO-format detection set (images + `annotations` with xywh `bbox` and `category_id`).

    Category ids are mapped to contiguous labels 1..K in the order of `categories`; images are
    ordered by id and their annotations kept in file order (as pycocotools does). Annotations of an
    unknown image or category are left out (COCOeval does not see them either)."""

    def __init__(self, annotations: Path, images: Path | None = None) -> None:
        annotations = Path(annotations).expanduser()
        if not annotations.is_file():
            raise InputError(f"--data {annotations}: no such file (give 'scenes' or a COCO annotations JSON)")
        try:
            data = json.loads(annotations.read_text(encoding="utf-8"))
            cats = sorted(data["categories"], key=lambda c: c["id"])
            imgs = data["images"]
            anns = data.get("annotations", [])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{annotations} is not COCO-format JSON (needs images, annotations, categories): {exc}") from None
        self.root = Path(images).expanduser() if images else annotations.parent
        if images is None and imgs and not (self.root / imgs[0]["file_name"]).is_file() \
                and (annotations.parent / "images").is_dir():
            self.root = annotations.parent / "images"  # the common layout: annotations.json beside images/
        if not self.root.is_dir():
            raise InputError(f"--images {self.root}: no such folder")
        self.cat_to_label = {int(c["id"]): i + 1 for i, c in enumerate(cats)}
        self.classes = ["background"] + [str(c["name"]) for c in cats]
        by_image: dict[int, list[Annotation]] = {int(im["id"]): [] for im in imgs}
        try:
            for a in anns:
                if int(a["image_id"]) in by_image and int(a["category_id"]) in self.cat_to_label:
                    by_image[int(a["image_id"])].append(_annotation(a))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{annotations}: a bad annotation ({type(exc).__name__}: {exc}); each needs image_id, "
                            "category_id and bbox [x, y, width, height]") from None
        self.items = [(im, by_image[int(im["id"])]) for im in sorted(imgs, key=lambda im: int(im["id"]))]
        if not self.items:
            raise DataError(f"{annotations} lists no images")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        from dlcli.media import load_image

        im, anns = self.items[i]
        path = self.root / im["file_name"]
        img = load_image(str(path))
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
        return x, {
            # float64 (as COCOeval computes): trainable() hands the model float32.
            "boxes": torch.tensor([[bx, by, bx + bw, by + bh] for (bx, by, bw, bh), *_ in anns],
                                  dtype=torch.float64).reshape(-1, 4),
            "labels": torch.tensor([self.cat_to_label[cat] for _, cat, _, _ in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([crowd for *_, crowd in anns], dtype=torch.bool),
            # float64: an area on the 32² / 96² boundary must sort into the same range as in COCOeval.
            "area": torch.tensor([area for _, _, area, _ in anns], dtype=torch.float64),
        }


Annotation = tuple[tuple[float, float, float, float], int, float, bool]
"""(xywh box, category id, area, crowd)."""


def _annotation(a: dict[str, Any]) -> Annotation:
    bx, by, bw, bh = (float(v) for v in a["bbox"])
    if not all(np.isfinite((bx, by, bw, bh))):
        raise ValueError(f"bbox {a['bbox']} is not finite")
    area = float(a["area"]) if a.get("area") is not None else bw * bh
    return (bx, by, bw, bh), int(a["category_id"]), area, bool(a.get("iscrowd", 0))


def trainable(target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The boxes a detector learns from: no crowd regions (they mark many objects at once) and no
    box of a pixel or less (Faster R-CNN's box coder needs a positive width and height)."""
    boxes = target["boxes"]
    keep = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
    if "iscrowd" in target:
        keep &= ~target["iscrowd"]
    return {"boxes": boxes[keep].float(), "labels": target["labels"][keep]}
