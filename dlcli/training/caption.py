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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from dlcli.training.configs import CaptionTrainConfig
from dlcli.device import Runtime
from dlcli.errors import InputError
from dlcli.progress import NullReporter, Reporter
from dlcli.results import CaptionTrainReport
from dlcli.data.captions import MEAN, STD, CaptionSet, CocoCaptions, SceneCaptions, normalize
from dlcli.evaluation.caption import evaluate
from dlcli.text.vocab import Vocab, tokenize
from dlcli.training.checkpoint import Interrupted, load_checkpoint, save_checkpoint
from dlcli.training.distributed import Dist
from dlcli.training.epochs import settle_replicas
from dlcli.training.run import RunFolder, check_run_folder
from dlcli.training.schedules import warmup_cosine


def encode_batch(vocab: Vocab, captions: Sequence[str], max_length: int) -> torch.Tensor:
    """(B, T) ids: <start> w1 … wN <end> <pad>…, captions cut to max_length words."""
    rows = [vocab.encode(" ".join(tokenize(c)[:max_length])) for c in captions]
    out = torch.full((len(rows), max(len(r) for r in rows)), vocab.pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


# --- config ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    bleu1: float
    bleu4: float
    lr: float
    seconds: float


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
        "extra": {"max_length": cfg.max_length, "data": cfg.data, **({"domain": "scenes"} if cfg.data == "scenes" else {})},
    }


def train_caption(cfg: CaptionTrainConfig, runtime: Runtime, *, out: Path, resume: bool = False, force: bool = False,
                  dist: Dist | None = None, reporter: Reporter | None = None, offline: bool = False,
                  recipe: str = "") -> CaptionTrainReport | None:
    """Train NIC in the run folder `out` (dlcli/training/run.py: checkpoint.pt every epoch,
    best.safetensors by validation BLEU-4, last.safetensors, metrics.jsonl). A resumed run keeps
    its own settings; only the epoch budget may change. Under torchrun each rank takes its share
    of every batch and rank 0 validates and writes; returns None on the other ranks."""
    from dlcli.models.nic import NIC

    dist = dist or Dist()
    reporter = reporter or NullReporter()
    out = Path(out).expanduser()
    check_run_folder(out, resume=resume, force=force)
    if resume:
        ckpt_file = out / "checkpoint.pt"
        saved = json.loads(torch.load(ckpt_file, map_location="cpu", weights_only=True)["config"])
        saved.pop("out", None)  # runs from before the shared run folder kept it in the config
        diff = sorted(k for k in saved if k != "epochs" and saved[k] != asdict(cfg).get(k))
        if diff:
            reporter.message(f"resuming with the run's own settings for: {', '.join(diff)}")
        cfg = CaptionTrainConfig(**{**saved, "epochs": cfg.epochs})
    if cfg.batch_size < 2 * dist.world_size:
        raise InputError(f"--batch-size {cfg.batch_size} leaves fewer than 2 images per process "
                         f"({dist.world_size} processes); batch normalisation needs 2")
    torch.manual_seed(cfg.seed)

    train, val = build_data(cfg, reporter)
    vocab = build_vocab(cfg, train)
    model = NIC(**cfg.model_config(len(vocab)))
    if cfg.encoder_weights and not resume:
        load_encoder_weights(model, cfg.encoder_weights, offline, reporter)
    if cfg.freeze_encoder:
        for p in model.encoder_parameters():
            p.requires_grad_(False)
    model = runtime.place(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total_steps, min(200, total_steps // 10 + 1), floor=0.02))
    criterion = nn.CrossEntropyLoss(ignore_index=vocab.pad_id)
    progress: dict[str, Any] = {"epoch": 0, "step": 0, "best_bleu4": -1.0, "best_epoch": 0, "best_metrics": {}}
    history: list[EpochRecord] = []
    run = RunFolder.open(out, task="caption", config=asdict(cfg), resume=resume, force=force, writer=dist.is_main,
                         reporter=reporter)
    if resume:
        state = load_checkpoint(run.checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
        progress.update(state["progress"])
        if state["extra"].get("vocab") and state["extra"]["vocab"] != vocab.to_list():
            raise InputError("the checkpoint's vocabulary differs from this data's; resume with the same data")
        history = [EpochRecord(**h) for h in progress.pop("history", [])]
        reporter.message(f"resumed at epoch {progress['epoch']} of {cfg.epochs}")
    ddp_model = dist.wrap(model)

    # Mid-epoch position: batches of the current epoch already trained, their loss sums and the
    # epoch generator's state (it draws the order and each image's caption), so a run stopped by
    # Ctrl-C continues at the next batch exactly as if it had never stopped.
    within: dict[str, Any] = {"batches": 0, "loss_sum": 0.0, "loss_n": 0, "gen": None}
    if resume:
        within.update(progress.pop("within", {}) or {})
        if within["batches"]:
            within["gen"] = state["extra"].get("gen")

    def checkpoint(mid_epoch: torch.Generator | None = None) -> Path:
        if dist.is_main:
            extra = {"vocab": vocab.to_list()}
            saved_progress = {**progress, "history": [asdict(h) for h in history]}
            if mid_epoch is not None and within["batches"]:
                extra["gen"] = mid_epoch.get_state()
                saved_progress["within"] = {k: within[k] for k in ("batches", "loss_sum", "loss_n")}
            save_checkpoint(run.checkpoint, model=model, optimizer=optimizer, scheduler=scheduler,
                            progress=saved_progress, config=asdict(cfg), extra_state=extra)
        return run.checkpoint

    try:
        while progress["epoch"] < cfg.epochs:
            epoch = progress["epoch"] + 1
            ddp_model.train()
            if cfg.freeze_encoder:
                model.cnn.eval()  # frozen BatchNorm statistics too
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            order = torch.randperm(len(train), generator=gen).tolist()
            t0 = time.perf_counter()
            loss_sum, loss_n = 0.0, 0
            skip = within["batches"]
            if skip:  # continuing an epoch that Ctrl-C stopped
                gen.set_state(within["gen"])
                loss_sum, loss_n = float(within["loss_sum"]), int(within["loss_n"])
            reporter.start(f"epoch {epoch}/{cfg.epochs}", total=len(order))
            if skip:
                reporter.advance(min(len(order), skip * cfg.batch_size))
            for lo in range(skip * cfg.batch_size, len(order), cfg.batch_size):
                batch = order[lo: lo + cfg.batch_size]
                # Every rank draws the captions of the whole batch (the generator stays in step),
                # then keeps its share of it.
                if len(batch) < 2 * dist.world_size:  # BatchNorm needs two samples; a tiny last batch is skipped
                    within["batches"] += 1
                    continue
                caps_all = []
                for i in batch:
                    options = train.captions(i)
                    caps_all.append(options[int(torch.randint(len(options), (1,), generator=gen))])
                idx, caps = batch[dist.rank::dist.world_size], caps_all[dist.rank::dist.world_size]
                ids = runtime.to(encode_batch(vocab, caps, cfg.max_length))
                images = runtime.to(normalize(train.images(idx)))
                with runtime.autocast():
                    logits = ddp_model(images, ids[:, :-1])
                loss = criterion(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, 5.0)
                optimizer.step()
                scheduler.step()
                progress["step"] += 1
                within["batches"] += 1
                loss_sum += float(loss.detach()) * len(idx)
                loss_n += len(idx)
                within.update(loss_sum=loss_sum, loss_n=loss_n)
                reporter.advance(len(batch), loss=loss_sum / loss_n)
            reporter.finish()
            loss_sum, loss_n = dist.all_reduce_sum([loss_sum, loss_n])
            metrics: dict[str, float] = {}
            if dist.is_main:
                metrics, _ = evaluate(model, vocab, val, runtime, max_length=cfg.max_length, reporter=reporter)
            metrics = dist.broadcast_object(metrics)
            record = EpochRecord(epoch, loss_sum / max(1, loss_n), metrics["bleu1"], metrics["bleu4"],
                                 optimizer.param_groups[0]["lr"], time.perf_counter() - t0)
            history.append(record)
            reporter.row({k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(record).items()})
            progress["epoch"] = epoch
            within.update(batches=0, loss_sum=0.0, loss_n=0)
            run.log("train", {"loss": record.loss, "lr": record.lr, "seconds": record.seconds},
                    step=progress["step"], epoch=epoch)
            run.log("val", metrics, step=progress["step"], epoch=epoch)
            meta_metrics = {**{f"val_{k}": round(v, 4) for k, v in metrics.items()}, "epoch": epoch,
                            "val_scenes" if cfg.data == "scenes" else "val_images": len(val)}
            run.save_weights("last", model.state_dict(), weights_meta(cfg, vocab, meta_metrics, recipe))
            if metrics["bleu4"] > progress["best_bleu4"]:
                progress.update(best_bleu4=metrics["bleu4"], best_epoch=epoch, best_metrics=meta_metrics)
                run.save_weights("best", model.state_dict(), weights_meta(cfg, vocab, meta_metrics, recipe))
                run.note_best("val_bleu4", metrics["bleu4"], step=progress["step"], epoch=epoch)
            checkpoint()
    except KeyboardInterrupt:
        reporter.finish()
        path = checkpoint(gen if "gen" in locals() else None)
        run.interrupted()
        raise Interrupted(path) from None
    identical = settle_replicas(model, dist)
    run.finish(epochs=cfg.epochs, world_size=dist.world_size, ranks_identical=identical)
    if not dist.is_main:
        return None
    return CaptionTrainReport(str(out), str(run.best), progress["best_epoch"], progress["best_metrics"],
                              history, asdict(cfg))
