"""Training the small FCN (`dl segment train`) on the scene world or on image + mask folders.

Same run layout as the detector trainer (dlcli/training/detect.py): `checkpoint.pt` after every
epoch and on Ctrl-C, `last.safetensors` / `best.safetensors` with our metadata, `metrics.jsonl`;
`--resume DIR` continues. Scenes are generated on the fly (step `s` uses scenes `s*B … s*B+B-1`).

A user data set is a folder with `images/` and `masks/` (same file stems; a mask is a PNG whose
pixel values are class indices, 255 = ignore) and optionally `classes.txt` (one name a line,
background first).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from dlcli.training.configs import SegmentTrainConfig
from dlcli.data.masks import IGNORE_INDEX, MaskFolder, Sample
from dlcli.data.scenes import image_tensor
from dlcli.evaluation import pictures
from dlcli.evaluation.segmentation import evaluate_segmenter
from dlcli.progress import NullReporter, Reporter
from dlcli.training.distributed import Dist
from dlcli.training.epochs import (SplitData, TrainSummary, evaluation_pictures, open_config, run_epochs,
                                   scene_weights_meta)
from dlcli.training.run import RunFolder

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime

ARCH = "fcn_small"


class SegData(SplitData):
    """Stacked (images, masks) batches for step `s` of a run, and the validation samples."""

    def __init__(self, cfg: SegmentTrainConfig) -> None:
        super().__init__(cfg, None if cfg.data == "scenes" else MaskFolder(Path(cfg.data), cfg.image_size))

    def scene_sample(self, seed: int, index: int) -> Sample:
        s = self.scenes.make_scene(seed, index, size=self.cfg.image_size)
        return (image_tensor(s.image),
                torch.from_numpy(s.semantic.astype(np.int64)))

    def batch(self, epoch: int, step_in_epoch: int, dist: Dist | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        items = super().batch(epoch, step_in_epoch, dist)
        return torch.stack([x for x, _ in items]), torch.stack([m for _, m in items])


def weights_meta(cfg: SegmentTrainConfig, metrics: dict[str, Any], steps: int) -> dict[str, Any]:
    data = "synthetic scenes (dlcli.data.scenes, train seed 0)" if cfg.data == "scenes" else f"mask folder {cfg.data}"
    recipe = (f"dl segment train on {data}: {steps} steps x batch {cfg.batch_size}, AdamW lr {cfg.lr} "
              f"(warm-up {cfg.warmup_steps}, cosine), weight decay {cfg.weight_decay}, cross-entropy, seed {cfg.seed}")
    return scene_weights_meta(cfg, arch=ARCH, task="segment", metrics=metrics, recipe=recipe)


def train_segmenter(cfg: SegmentTrainConfig, out: Path, runtime: Runtime, *, resume: bool = False, force: bool = False,
                    reporter: Reporter | None = None, dist: Dist | None = None) -> TrainSummary:
    """Train (or continue training) the small FCN; returns where the best weights are."""
    from dlcli.device import seed_everything
    from dlcli.models.fcn_small import FCNSmall

    reporter = reporter or NullReporter()
    dist = dist or Dist()
    cfg = open_config(SegmentTrainConfig, cfg, out, resume)
    seed_everything(cfg.seed)
    data = SegData(cfg)
    cfg.classes = data.classes
    run = RunFolder.open(out, task="segment", config=asdict(cfg), resume=resume, force=force, writer=dist.is_main,
                         reporter=reporter)
    model = runtime.place(FCNSmall(**cfg.model_config()))
    net = dist.wrap(model)

    def step_loss(epoch: int, step: int) -> torch.Tensor:
        x, y = data.batch(epoch, step, dist)
        x, y = runtime.to(x), runtime.to(y)
        with runtime.autocast():
            logits = net(x)
        return F.cross_entropy(logits.float(), y, ignore_index=IGNORE_INDEX)

    last: dict[str, Any] = {}

    def evaluate() -> tuple[dict[str, float], float]:
        cm = evaluate_segmenter(model, data.validation(), runtime, len(cfg.classes),
                                batch_size=cfg.batch_size, reporter=reporter, total=len(data.val_indices))
        last["matrix"] = cm.matrix
        if run.takes_images:
            run.log_image("val/segmentations", segmentations_strip(model, data, runtime, len(cfg.classes)), run.step)
        return {"val_miou": round(cm.mean_iou(), 4), "val_pixel_acc": round(cm.pixel_accuracy(), 4)}, cm.mean_iou()

    summary = run_epochs(cfg, run, resume=resume, steps_per_epoch=data.steps_per_epoch, best_key="best_miou",
                         model=model, params=list(model.parameters()), reporter=reporter, step_loss=step_loss,
                         evaluate=evaluate, weights_meta=lambda metrics, steps: weights_meta(cfg, metrics, steps),
                         dist=dist)
    if dist.is_main and "matrix" in last:
        evaluation_pictures(run, lambda: pictures.segmentation(last["matrix"], list(cfg.classes), run.path))
    return summary


def segmentations_strip(model: torch.nn.Module, data: SegData, runtime: Runtime, num_classes: int,
                        count: int = 4) -> Any:
    """The first `count` validation images, each above its true and its predicted mask (class
    colours): the same scenes every epoch, for TensorBoard's image slider."""
    from PIL import Image

    from dlcli import media

    samples = [s for _, s in zip(range(count), data.validation())]
    was_training = model.training
    model.eval()
    try:
        with runtime.inference():
            pred = model(runtime.to(torch.stack([x for x, _ in samples]))).float().argmax(1).cpu().numpy()
    finally:
        model.train(was_training)
    lut = np.array([(0, 0, 0)] + media.palette(max(num_classes - 1, 1)), dtype=np.uint8)
    tiles = []
    for (x, truth), p in zip(samples, pred):
        tiles.append(Image.fromarray((x.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()))
        tiles.append(Image.fromarray(lut[np.clip(truth.numpy(), 0, len(lut) - 1)]))
        tiles.append(Image.fromarray(lut[np.clip(p, 0, len(lut) - 1)]))
    # One column per scene: image, truth, prediction from top to bottom.
    columns = [tiles[i::3] for i in range(3)]
    return media.make_grid([t for row in columns for t in row], ncols=len(samples))
