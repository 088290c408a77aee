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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlcli.data.coco import CocoDetection, Sample
from dlcli.errors import InputError
from dlcli.evaluation.detection import evaluate_detector
from dlcli.progress import NullReporter, Reporter
from dlcli.training.epochs import SplitData, TrainSummary, open_run, run_epochs, scene_weights_meta

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


class TrainData(SplitData):
    """Lists of (image, target) samples for step `s` of a run, and the validation samples."""

    def __init__(self, cfg: DetectTrainConfig) -> None:
        super().__init__(cfg, None if cfg.data == "scenes" else
                         CocoDetection(Path(cfg.data), Path(cfg.images) if cfg.images else None))

    def scene_sample(self, seed: int, index: int) -> Sample:
        s = self.scenes.make_scene(seed, index, size=self.cfg.image_size)
        x = torch.from_numpy(s.image).permute(2, 0, 1).float().div_(255.0)
        return x, {"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels)}


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
