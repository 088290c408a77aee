"""Training the small Faster R-CNN (`dl detect train`) on the scene world or a COCO-format data set.

A run lives in one folder (`--out`): `checkpoint.pt` (everything needed to continue: model,
optimiser, scheduler, RNG, counters; written after every epoch and on Ctrl-C), `last.safetensors`
and `best.safetensors` (weights with our metadata, so `dl detect --weights-file` reads them) and
`metrics.jsonl` (one line per epoch). `--resume DIR` continues where the checkpoint left off.

Scene data are generated on the fly: step `s` of a run trains on scenes `s*B … s*B+B-1` of the
training seed, so every step sees new images and a resumed run sees exactly the images it would
have seen without the interruption.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from dlcli.errors import DataError, InputError
from dlcli.progress import NullReporter, Reporter
from dlcli.training.epochs import SplitData, TrainSummary, batched, open_run, run_epochs, scene_weights_meta

ARCH = "fasterrcnn_small"
LICENSE = "MIT (trained by the dlcli authors on generated scenes)"


@dataclass
class DetectTrainConfig:
    """Options of a detector training run (what `dl detect train` exposes)."""

    data: str = "scenes"
    """'scenes' (the synthetic world) or a COCO-format annotations JSON file."""
    images: str | None = None
    """Image folder for a COCO JSON (default: the JSON's folder)."""
    epochs: int = 8
    """Passes; for scenes an epoch is `steps_per_epoch` batches of fresh scenes."""
    steps_per_epoch: int = 100
    """Batches per epoch (scenes only; a COCO set's epoch is one pass over its images)."""
    batch_size: int = 8
    lr: float = 3e-3
    """Peak AdamW learning rate (linear warm-up, then cosine decay to 1/20 of it)."""
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    val_size: int = 100
    """Held-out scenes (validation seed) scored after every epoch; COCO: the last 10% of images."""
    backbone: str = "fcn"
    """'fcn' (our FCN's encoder, can start from a trained FCN) or 'conv' (plain, from scratch)."""
    width: int = 16
    out_channels: int = 64
    representation: int = 128
    image_size: int = 128
    seed: int = 0
    init_from: str | None = None
    """A segment weights name (fcn_small.*) whose encoder initialises the 'fcn' backbone."""
    freeze_backbone: bool = False
    """Train only the FPN, RPN and box head on top of the (initialised) FCN encoder: faster per step."""
    classes: list[str] = field(default_factory=list)
    """Class names, background first (filled from the data)."""

    def model_config(self) -> dict[str, Any]:
        return {
            "num_classes": len(self.classes),
            "backbone": self.backbone,
            "width": self.width,
            "out_channels": self.out_channels,
            "representation": self.representation,
            "image_size": self.image_size,
        }


# --- data ---------------------------------------------------------------------------------------


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


class TrainData(SplitData):
    """Lists of (image, target) samples for step `s` of a run, and the validation samples."""

    def __init__(self, cfg: DetectTrainConfig) -> None:
        super().__init__(cfg, None if cfg.data == "scenes" else
                         CocoDetection(Path(cfg.data), Path(cfg.images) if cfg.images else None))

    def scene_sample(self, seed: int, index: int) -> Sample:
        s = self.scenes.make_scene(seed, index, size=self.cfg.image_size)
        x = torch.from_numpy(s.image).permute(2, 0, 1).float().div_(255.0)
        return x, {"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels)}


# --- evaluation -----------------------------------------------------------------------------------


def evaluate_detector(model: torch.nn.Module, samples: Sequence[Sample] | Iterator[Sample], runtime: Any,
                      *, batch_size: int = 8, reporter: Reporter | None = None, total: int | None = None) -> Any:
    """Run `model` over (image, target) samples and score it (mAP@0.5, mAP@0.5:0.95)."""
    from dlcli.tasks.detection_metrics import ImageBoxes, mean_average_precision

    reporter = reporter or NullReporter()
    preds: list[ImageBoxes] = []
    gts: list[ImageBoxes] = []
    was_training = model.training
    model.eval()
    reporter.start("evaluating", total=total, unit="img")

    def flush(batch: list[Sample]) -> None:
        with runtime.inference():
            outs = model([runtime.to(x) for x, _ in batch])
        for (_, t), o in zip(batch, outs):
            preds.append(ImageBoxes.of(o["boxes"].float().cpu().numpy(), o["labels"].cpu().numpy(),
                                       o["scores"].float().cpu().numpy()))
            gts.append(ImageBoxes.of(t["boxes"].numpy(), t["labels"].numpy()))
        reporter.advance(len(batch))

    try:
        for batch in batched(samples, batch_size):
            flush(batch)
    finally:
        reporter.finish()
        model.train(was_training)
    return mean_average_precision(preds, gts)


# --- the trainer ------------------------------------------------------------------------------------


def weights_meta(cfg: DetectTrainConfig, metrics: dict[str, Any], steps: int) -> dict[str, Any]:
    data = "synthetic scenes (dlcli.data.scenes, train seed 0)" if cfg.data == "scenes" else f"COCO-format {cfg.data}"
    start = f"backbone initialised from {cfg.init_from}'s encoder, " if cfg.init_from else ""
    start += "encoder frozen, " if cfg.freeze_backbone else ""
    recipe = (f"dl detect train on {data}: {start}{steps} steps x batch {cfg.batch_size}, AdamW lr {cfg.lr} "
              f"(warm-up {cfg.warmup_steps}, cosine), weight decay {cfg.weight_decay}, seed {cfg.seed}")
    return scene_weights_meta(cfg, arch=ARCH, task="detect", metrics=metrics, recipe=recipe, license=LICENSE)


def init_backbone(model: torch.nn.Module, name: str) -> int:
    """Start the 'fcn' backbone from the encoder of trained segment weights `name` (fcn_small.*)."""
    from dlcli.errors import WeightsError
    from dlcli.weights import loader

    if not hasattr(model.backbone, "load_fcn_encoder"):
        raise InputError("--init-from needs the fcn backbone (--backbone fcn)")
    loaded = loader.load_model(name, task="segment", offline=True)
    if loaded.spec.arch != "fcn_small":
        raise InputError(f"--init-from {name}: need fcn_small weights, got {loaded.spec.arch}")
    try:
        return model.backbone.load_fcn_encoder(loaded.model.state_dict())
    except ValueError as exc:
        raise WeightsError(f"--init-from {name}: {exc}; use the same --width as the FCN") from None


def train_detector(cfg: DetectTrainConfig, out: Path, runtime: Any, *, resume: bool = False,
                   reporter: Reporter | None = None) -> TrainSummary:
    """Train (or continue training) the small Faster R-CNN; returns where the best weights are."""
    from dlcli.device import seed_everything
    from dlcli.models.detector_small import fasterrcnn_small

    reporter = reporter or NullReporter()
    cfg, out = open_run(DetectTrainConfig, cfg, out, resume)
    seed_everything(cfg.seed)
    data = TrainData(cfg)
    cfg.classes = data.classes
    if cfg.backbone not in ("fcn", "conv"):
        raise InputError(f"--backbone must be fcn or conv, got {cfg.backbone!r}")
    model = fasterrcnn_small(**cfg.model_config())
    if cfg.init_from and not resume:
        copied = init_backbone(model, cfg.init_from)
        reporter.message(f"backbone: {copied} tensors from {cfg.init_from}'s encoder")
    if cfg.freeze_backbone:
        if not hasattr(model.backbone, "freeze_encoder"):
            raise InputError("--freeze-backbone needs the fcn backbone (--backbone fcn)")
        model.backbone.freeze_encoder()
    model = runtime.place(model)
    params = [p for p in model.parameters() if p.requires_grad]

    def step_loss(epoch: int, step: int) -> torch.Tensor:
        batch = data.batch(epoch, step)
        images = [runtime.to(x) for x, _ in batch]
        targets = [{k: runtime.to(v) for k, v in t.items()} for _, t in batch]
        with runtime.autocast():
            loss_dict = model(images, targets)
        return sum(loss_dict.values())

    def evaluate() -> tuple[dict[str, float], float]:
        scores = evaluate_detector(model, data.validation(), runtime, batch_size=cfg.batch_size,
                                   reporter=reporter, total=len(data.val_indices))
        return {"val_map50": round(scores.map50, 4), "val_map50_95": round(scores.map50_95, 4)}, scores.map50

    return run_epochs(cfg, out, resume=resume, steps_per_epoch=data.steps_per_epoch, best_key="best_map50",
                      model=model, params=params, reporter=reporter, step_loss=step_loss, evaluate=evaluate,
                      weights_meta=lambda metrics, steps: weights_meta(cfg, metrics, steps), clip_norm=10.0)
