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
from dlcli.errors import DataError, InputError
from dlcli.progress import NullReporter, Reporter
from dlcli.text.bleu import corpus_bleu
from dlcli.text.search import beam_search, greedy
from dlcli.text.vocab import Vocab, tokenize
from dlcli.training.checkpoint import Interrupted, load_checkpoint, save_checkpoint

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# --- data ----------------------------------------------------------------------------------------


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


# --- evaluation -----------------------------------------------------------------------------------


@torch.no_grad()
def generate(model: Any, vocab: Vocab, pixels: torch.Tensor, runtime: Runtime, *, beam_size: int = 1,
             max_length: int = 24) -> list[list[Any]]:
    """Candidates (dlcli.text.search.Candidate lists, best first) for uint8 images (B, 3, H, W)."""
    with runtime.inference():
        feats = model.encode(runtime.to(normalize(pixels))).float()
        if beam_size == 1:
            return [[c] for c in greedy(model, feats, start_id=vocab.start_id, end_id=vocab.end_id,
                                        max_length=max_length)]
        return [beam_search(model, f, start_id=vocab.start_id, end_id=vocab.end_id, max_length=max_length,
                            beam_size=beam_size) for f in feats]


def evaluate(model: Any, vocab: Vocab, data: CaptionSet, runtime: Runtime, *, beam_size: int = 1,
             max_length: int = 24, batch_size: int = 64, reporter: Reporter | None = None,
             keep_examples: int = 0) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Corpus BLEU-1..4 of the best caption per image against its references, and a few examples."""
    reporter = reporter or NullReporter()
    model.eval()
    cands: list[list[str]] = []
    refs: list[list[list[str]]] = []
    examples: list[dict[str, Any]] = []
    reporter.start("captioning", total=len(data))
    for lo in range(0, len(data), batch_size):
        idx = list(range(lo, min(lo + batch_size, len(data))))
        best = [c[0] for c in generate(model, vocab, data.images(idx), runtime, beam_size=beam_size,
                                       max_length=max_length)]
        for i, cand in zip(idx, best):
            words = vocab.words(cand.tokens)
            cands.append(words)
            refs.append([tokenize(r) for r in data.captions(i)])
            if len(examples) < keep_examples:
                examples.append({"index": i, "caption": " ".join(words), "references": data.captions(i)})
        reporter.advance(len(idx))
    reporter.finish()
    return corpus_bleu(cands, refs), examples


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


# --- `dl caption eval` ------------------------------------------------------------------------------


def evaluate_weights(runtime: Runtime, *, model: str | None = None, weights_file: str | Path | None = None,
                     data: str = "scenes", size: int = 500, data_seed: int = 2, captions_file: str | None = None,
                     images_dir: str | None = None, beam_size: int = 3, max_length: int | None = None,
                     batch_size: int = 32, examples: int = 5, offline: bool = False,
                     reporter: Reporter | None = None) -> Any:
    """Corpus BLEU-1..4 of a captioner on a held-out set: `size` scenes of the world `data_seed`
    (the training run used seeds 0 and 1) or every image of a COCO captions file."""
    from dlcli.results import CaptionEvalReport, Provenance
    from dlcli.tasks.caption import MAX_BEAM, load_captioner

    if not 1 <= beam_size <= MAX_BEAM:
        raise InputError(f"--beam-size must be between 1 and {MAX_BEAM}, got {beam_size}")
    if max_length is not None and not 1 <= max_length <= 200:
        raise InputError(f"--max-length must be between 1 and 200 words, got {max_length}")
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    cap = load_captioner(model, weights_file=weights_file, offline=offline, reporter=reporter)
    image_size = int(cap.loaded.spec.preprocess_args.get("size", 224))
    if captions_file or images_dir:
        if not captions_file or not images_dir:
            raise InputError("COCO evaluation needs both --captions FILE.json and --images DIR")
        dataset: CaptionSet = CocoCaptions(Path(captions_file), Path(images_dir), image_size)
        what = f"{Path(captions_file).name} ({len(dataset)} images)"
    elif data == "scenes":
        if size < 1:
            raise InputError(f"--size must be at least 1, got {size}")
        dataset = SceneCaptions(size, data_seed, image_size, reporter, "test scenes")
        what = f"scenes seed {data_seed} ({size} images)"
    else:
        raise InputError(f"unknown data {data!r}: use --data scenes, or --captions FILE --images DIR")
    net = runtime.place(cap.model)
    limit = max_length or cap.max_length
    bleu, shown = evaluate(net, cap.vocab, dataset, runtime, beam_size=beam_size, max_length=limit,
                           batch_size=batch_size, reporter=reporter, keep_examples=examples)
    return CaptionEvalReport(cap.loaded.name, what, len(dataset), beam_size, limit, bleu, tuple(shown),
                             time.perf_counter() - t0, Provenance.collect(runtime, cap.loaded.name, cap.loaded.sha256))
