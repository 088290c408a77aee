"""COCO-format detection data: an annotations JSON (images, annotations with xywh bbox and
category_id, categories) and its image folder."""

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

    Category ids are mapped to contiguous labels 1..K in the order of `categories`; crowd
    annotations and degenerate boxes are skipped."""

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
        by_image: dict[int, list[dict[str, Any]]] = {int(im["id"]): [] for im in imgs}
        for a in anns:
            if a.get("iscrowd"):
                continue
            if int(a["image_id"]) in by_image and int(a["category_id"]) in self.cat_to_label:
                by_image[int(a["image_id"])].append(a)
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
        boxes, labels = [], []
        for a in anns:
            bx, by, bw, bh = (float(v) for v in a["bbox"])
            if bw > 1 and bh > 1:
                boxes.append([bx, by, bx + bw, by + bh])
                labels.append(self.cat_to_label[int(a["category_id"])])
        return x, {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
        }
