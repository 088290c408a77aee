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

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dlcli.training.configs import DetectTrainConfig
from dlcli.data.coco import CocoDetection, Sample, trainable
from dlcli.data.scenes import image_tensor
from dlcli.errors import InputError
from dlcli.evaluation import pictures
from dlcli.evaluation.detection import evaluate_detector
from dlcli.progress import NullReporter, Reporter
from dlcli.training.distributed import Dist
from dlcli.training.epochs import (SplitData, TrainSummary, evaluation_pictures, open_config, run_epochs,
                                   scene_weights_meta)
from dlcli.training.run import RunFolder

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime

ARCH = "fasterrcnn_small"


# --- data ---------------------------------------------------------------------------------------


class TrainData(SplitData):
    """Lists of (image, target) samples for step `s` of a run, and the validation samples."""

    def __init__(self, cfg: DetectTrainConfig) -> None:
        super().__init__(cfg, None if cfg.data == "scenes" else
                         CocoDetection(Path(cfg.data), Path(cfg.images) if cfg.images else None))

    def batch(self, epoch: int, step_in_epoch: int, dist: Dist | None = None) -> list[Sample]:
        # A COCO set's targets keep crowd regions and tiny boxes for evaluation; training skips them.
        samples = super().batch(epoch, step_in_epoch, dist)
        return samples if self.dataset is None else [(x, trainable(t)) for x, t in samples]

    def scene_sample(self, seed: int, index: int) -> Sample:
        s = self.scenes.make_scene(seed, index, size=self.cfg.image_size)
        x = image_tensor(s.image)
        return x, {"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels)}


# --- the trainer ------------------------------------------------------------------------------------


def weights_meta(cfg: DetectTrainConfig, metrics: dict[str, Any], steps: int) -> dict[str, Any]:
    data = "synthetic scenes (dlcli.data.scenes, train seed 0)" if cfg.data == "scenes" else f"COCO-format {cfg.data}"
    start = f"backbone initialised from {cfg.init_from}'s encoder, " if cfg.init_from else ""
    start += "encoder frozen, " if cfg.freeze_backbone else ""
    recipe = (f"dl detect train on {data}: {start}{steps} steps x batch {cfg.batch_size}, AdamW lr {cfg.lr} "
              f"(warm-up {cfg.warmup_steps}, cosine), weight decay {cfg.weight_decay}, seed {cfg.seed}")
    return scene_weights_meta(cfg, arch=ARCH, task="detect", metrics=metrics, recipe=recipe)


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


def train_detector(cfg: DetectTrainConfig, out: Path, runtime: Runtime, *, resume: bool = False, force: bool = False,
                   reporter: Reporter | None = None, dist: Dist | None = None) -> TrainSummary:
    """Train (or continue training) the small Faster R-CNN; returns where the best weights are."""
    from dlcli.device import seed_everything
    from dlcli.models.detector_small import fasterrcnn_small

    reporter = reporter or NullReporter()
    dist = dist or Dist()
    cfg = open_config(DetectTrainConfig, cfg, out, resume)
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
    run = RunFolder.open(out, task="detect", config=asdict(cfg), resume=resume, force=force, writer=dist.is_main,
                         reporter=reporter)
    model = runtime.place(model)
    params = [p for p in model.parameters() if p.requires_grad]
    net = dist.wrap(model)

    def step_loss(epoch: int, step: int) -> torch.Tensor:
        batch = data.batch(epoch, step, dist)
        images = [runtime.to(x) for x, _ in batch]
        targets = [{k: runtime.to(v) for k, v in t.items()} for _, t in batch]
        with runtime.autocast():
            loss_dict = net(images, targets)
        return sum(loss_dict.values())

    last: dict[str, Any] = {}

    def evaluate() -> tuple[dict[str, float], float]:
        scores = evaluate_detector(model, data.validation(), runtime, batch_size=cfg.batch_size,
                                   reporter=reporter, total=len(data.val_indices))
        last["scores"] = scores
        if run.takes_images:
            run.log_image("val/detections", detections_strip(model, data, runtime, cfg.classes), run.step)
        return {"val_map50": round(scores.map50, 4), "val_map50_95": round(scores.map50_95, 4)}, scores.map50

    summary = run_epochs(cfg, run, resume=resume, steps_per_epoch=data.steps_per_epoch, best_key="best_map50",
                         model=model, params=params, reporter=reporter, step_loss=step_loss, evaluate=evaluate,
                         weights_meta=lambda metrics, steps: weights_meta(cfg, metrics, steps), clip_norm=10.0,
                         dist=dist)
    if dist.is_main and "scores" in last:
        evaluation_pictures(run, lambda: pictures.detection(last["scores"], lambda c: cfg.classes[c], run.path))
    return summary


def detections_strip(model: torch.nn.Module, data: TrainData, runtime: Runtime, classes: list[str],
                     count: int = 4, threshold: float = 0.5) -> Any:
    """The first `count` validation images with the model's detections (score >= threshold) drawn:
    the same scenes every epoch, so TensorBoard's slider shows the detector learning."""
    from PIL import Image

    from dlcli import media

    samples = [s for _, s in zip(range(count), data.validation())]
    was_training = model.training
    model.eval()
    try:
        with runtime.inference():
            outs = model([runtime.to(x) for x, _ in samples])
    finally:
        model.train(was_training)
    colours = media.palette(len(classes))
    tiles = []
    for (x, _), o in zip(samples, outs):
        keep = o["scores"] >= threshold
        boxes, labels = o["boxes"][keep].float().cpu().tolist(), o["labels"][keep].cpu().tolist()
        image = Image.fromarray((x.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())
        tiles.append(media.draw_boxes(image, boxes, [classes[i] if i < len(classes) else str(i) for i in labels],
                                      [colours[i % len(colours)] for i in labels]))
    return media.make_grid(tiles, ncols=len(tiles))
