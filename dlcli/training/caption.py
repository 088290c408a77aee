"""Training and evaluating NIC captioners: teacher forcing, cross-entropy over the non-pad tokens,
per-epoch loss and validation BLEU, checkpoints every epoch, --resume, and a named weights file
that `dl caption --weights-file` (or the manifest) reads.

Two data sources:
- `scenes`: the seeded synthetic scene world (dlcli/data/scenes.py); training, validation and test
  sets are different seeds of it, generated in memory (no files);
- COCO-format annotations (`captions_train2017.json` layout: "images" with id and file_name,
  "annotations" with image_id and caption) plus the image folder; a seeded share is held out for
  validation.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from dlcli.device import Runtime
from dlcli.errors import InputError
from dlcli.progress import NullReporter, Reporter
from dlcli.data.captions import MEAN, STD, CaptionSet, CocoCaptions, SceneCaptions, normalize
from dlcli.evaluation.caption import evaluate
from dlcli.text.vocab import Vocab, tokenize
from dlcli.training.checkpoint import Interrupted, load_checkpoint, save_checkpoint

def encode_batch(vocab: Vocab, captions: Sequence[str], max_length: int) -> torch.Tensor:
    """(B, T) ids: <start> w1 … wN <end> <pad>…, captions cut to max_length words."""
    rows = [vocab.encode(" ".join(tokenize(c)[:max_length])) for c in captions]
    out = torch.full((len(rows), max(len(r) for r in rows)), vocab.pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


# --- config ---------------------------------------------------------------------------------------


@dataclass
class CaptionTrainConfig:
    """Everything a run depends on; stored in the checkpoint so --resume continues the same run."""

    out: str
    data: str = "scenes"  # "scenes" or "coco"
    captions_file: str | None = None  # COCO captions JSON
    images_dir: str | None = None
    train_size: int = 8000  # scenes rendered for training
    val_size: int = 300  # held-out scenes (another seed) for per-epoch BLEU
    val_fraction: float = 0.05  # COCO: share of images held out
    image_size: int = 80
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    max_length: int = 24  # words per caption (training cuts, inference stops)
    min_count: int = 1  # COCO: words seen fewer times become <unk>
    backbone: str = "small"
    cnn_width: int = 32
    cnn_grid: int = 4
    embed_dim: int = 128
    hidden_dim: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    freeze_encoder: bool = False
    encoder_weights: str | None = None  # a classify weights entry (e.g. resnet18.imagenet) for the CNN
    name: str = "nic.custom"
    seed: int = 0
    data_seed: int = 0  # scenes: world seed of the training set (validation uses data_seed + 1)
    extra: dict[str, Any] = field(default_factory=dict)

    def model_config(self, vocab_size: int) -> dict[str, Any]:
        return {"vocab_size": vocab_size, "embed_dim": self.embed_dim, "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers, "backbone": self.backbone, "cnn_width": self.cnn_width,
                "cnn_grid": self.cnn_grid, "dropout": self.dropout}


# Options that may differ on --resume (they do not change what is being trained).
_RESUMABLE = {"epochs", "out"}


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    bleu1: float
    bleu4: float
    lr: float
    seconds: float


@dataclass
class CaptionTrainResult:
    out: str
    weights: str
    best_epoch: int
    metrics: dict[str, float]
    history: list[EpochRecord]
    config: dict[str, Any]


# --- training -------------------------------------------------------------------------------------


def build_data(cfg: CaptionTrainConfig, reporter: Reporter) -> tuple[CaptionSet, CaptionSet]:
    if cfg.data == "scenes":
        train = SceneCaptions(cfg.train_size, cfg.data_seed, cfg.image_size, reporter, "training scenes")
        val = SceneCaptions(cfg.val_size, cfg.data_seed + 1, cfg.image_size, reporter, "validation scenes")
        return train, val
    if cfg.data == "coco":
        if not cfg.captions_file or not cfg.images_dir:
            raise InputError("COCO training needs --captions FILE.json and --images DIR")
        full = CocoCaptions(Path(cfg.captions_file), Path(cfg.images_dir), cfg.image_size)
        return full.split(cfg.val_fraction, cfg.seed)
    raise InputError(f"unknown data {cfg.data!r}: use --data scenes, or --captions FILE --images DIR")


def build_vocab(cfg: CaptionTrainConfig, train: CaptionSet) -> Vocab:
    texts = [c for i in range(len(train)) for c in train.captions(i)]
    if cfg.data == "scenes":
        from dlcli.data.scenes import CAPTION_WORDS

        texts.append(" ".join(CAPTION_WORDS))  # every word of the world, seen or not
    return Vocab.build(texts, min_count=cfg.min_count)


def load_encoder_weights(model: Any, name: str, offline: bool, reporter: Reporter) -> None:
    """Copy an ImageNet classifier's backbone (a registry entry such as resnet18.imagenet) into the
    encoder; the classifier head is dropped."""
    from dlcli.errors import WeightsError
    from dlcli.weights.loader import load_model

    loaded = load_model(name, task="classify", offline=offline, reporter=reporter)
    state = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("fc.")}
    own = model.cnn.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise WeightsError(f"{name!r} does not fit the encoder {type(model.cnn).__name__}; pick the same "
                           "ResNet as --backbone")
    model.cnn.load_state_dict(state)


def weights_meta(cfg: CaptionTrainConfig, vocab: Vocab, metrics: dict[str, Any], recipe: str) -> dict[str, Any]:
    return {
        "name": cfg.name,
        "arch": "nic",
        "task": "caption",
        "config": cfg.model_config(len(vocab)),
        "labels": vocab.to_list(),  # the vocabulary, in id order
        "preprocess": "nic",
        "preprocess_args": {"size": cfg.image_size, "mean": list(MEAN), "std": list(STD)},
        "metrics": metrics,
        "recipe": recipe,
        "license": "MIT (trained by dlcli)",
        "extra": {"max_length": cfg.max_length, "data": cfg.data},
    }


def train_caption(cfg: CaptionTrainConfig, runtime: Runtime, *, reporter: Reporter | None = None,
                  resume: str | None = None, offline: bool = False, recipe: str = "") -> CaptionTrainResult:
    """Train NIC; writes OUT/checkpoint.pt (every epoch), OUT/<name>.safetensors (best validation
    BLEU-4), OUT/last.safetensors and OUT/history.jsonl."""
    from dlcli.models.nic import NIC
    from dlcli.weights.store import save_weights_file

    reporter = reporter or NullReporter()
    if resume is not None:
        ckpt_path = Path(resume).expanduser()
        ckpt_file = ckpt_path / "checkpoint.pt" if ckpt_path.is_dir() else ckpt_path
        if not ckpt_file.is_file():
            raise InputError(f"no checkpoint at {ckpt_file}; give the --out folder of the run to resume")
        saved = json.loads(torch.load(ckpt_file, map_location="cpu", weights_only=True)["config"])
        diff = sorted(k for k in saved if k not in _RESUMABLE and saved[k] != asdict(cfg).get(k))
        if diff:
            reporter.message(f"resuming with the run's own settings for: {', '.join(diff)}")
        # Continue the run as it was configured, in its own folder; only the epoch budget may change.
        cfg = CaptionTrainConfig(**{**saved, "epochs": cfg.epochs, "out": str(ckpt_file.parent)})
    out = Path(cfg.out).expanduser()
    if resume is None and (out / "checkpoint.pt").exists():
        raise InputError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    train, val = build_data(cfg, reporter)
    vocab = build_vocab(cfg, train)
    model = NIC(**cfg.model_config(len(vocab)))
    if cfg.encoder_weights and resume is None:
        load_encoder_weights(model, cfg.encoder_weights, offline, reporter)
    if cfg.freeze_encoder:
        for p in model.encoder_parameters():
            p.requires_grad_(False)
    model = runtime.place(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = min(200, total_steps // 10 + 1)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine to 2% of the peak
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    criterion = nn.CrossEntropyLoss(ignore_index=vocab.pad_id)
    progress: dict[str, Any] = {"epoch": 0, "step": 0, "best_bleu4": -1.0, "best_epoch": 0, "best_metrics": {}}
    history: list[EpochRecord] = []
    if resume is not None:
        state = load_checkpoint(out / "checkpoint.pt", model=model, optimizer=optimizer, scheduler=scheduler)
        progress.update(state["progress"])
        if state["extra"].get("vocab") and state["extra"]["vocab"] != vocab.to_list():
            raise InputError("the checkpoint's vocabulary differs from this data's; resume with the same data")
        history = [EpochRecord(**h) for h in progress.pop("history", [])]
        reporter.message(f"resumed at epoch {progress['epoch']} of {cfg.epochs}")

    def checkpoint() -> Path:
        return save_checkpoint(out / "checkpoint.pt", model=model, optimizer=optimizer, scheduler=scheduler,
                               progress={**progress, "history": [asdict(h) for h in history]},
                               config=asdict(cfg), extra_state={"vocab": vocab.to_list()})

    weights_path = out / f"{cfg.name}.safetensors"
    try:
        while progress["epoch"] < cfg.epochs:
            epoch = progress["epoch"] + 1
            model.train()
            if cfg.freeze_encoder:
                model.cnn.eval()  # frozen BatchNorm statistics too
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            order = torch.randperm(len(train), generator=gen).tolist()
            t0 = time.perf_counter()
            loss_sum, loss_n = 0.0, 0
            reporter.start(f"epoch {epoch}/{cfg.epochs}", total=len(order))
            for lo in range(0, len(order), cfg.batch_size):
                idx = order[lo: lo + cfg.batch_size]
                if len(idx) < 2:  # BatchNorm needs two samples; a last batch of one is skipped
                    continue
                caps = []
                for i in idx:
                    options = train.captions(i)
                    caps.append(options[int(torch.randint(len(options), (1,), generator=gen))])
                ids = runtime.to(encode_batch(vocab, caps, cfg.max_length))
                images = runtime.to(normalize(train.images(idx)))
                with runtime.autocast():
                    logits = model(images, ids[:, :-1])
                loss = criterion(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, 5.0)
                optimizer.step()
                scheduler.step()
                progress["step"] += 1
                loss_sum += float(loss.detach()) * len(idx)
                loss_n += len(idx)
                reporter.advance(len(idx), loss=loss_sum / loss_n)
            reporter.finish()
            metrics, _ = evaluate(model, vocab, val, runtime, max_length=cfg.max_length, reporter=reporter)
            record = EpochRecord(epoch, loss_sum / max(1, loss_n), metrics["bleu1"], metrics["bleu4"],
                                 optimizer.param_groups[0]["lr"], time.perf_counter() - t0)
            history.append(record)
            reporter.row({k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(record).items()})
            progress["epoch"] = epoch
            meta_metrics = {**{f"val_{k}": round(v, 4) for k, v in metrics.items()}, "epoch": epoch,
                            "val_scenes" if cfg.data == "scenes" else "val_images": len(val)}
            save_weights_file(out / "last.safetensors", model.state_dict(), weights_meta(cfg, vocab, meta_metrics, recipe))
            if metrics["bleu4"] > progress["best_bleu4"]:
                progress.update(best_bleu4=metrics["bleu4"], best_epoch=epoch, best_metrics=meta_metrics)
                save_weights_file(weights_path, model.state_dict(), weights_meta(cfg, vocab, meta_metrics, recipe))
            with (out / "history.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(record)) + "\n")
            checkpoint()
    except KeyboardInterrupt:
        reporter.finish()
        raise Interrupted(checkpoint()) from None
    return CaptionTrainResult(str(out), str(weights_path), progress["best_epoch"], progress["best_metrics"],
                              history, asdict(cfg))


