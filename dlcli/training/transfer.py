"""Transfer learning (`dl classify train DATA_DIR`): a pretrained classifier's head is replaced by
one for the data set's classes, then either the head alone (--freeze-backbone) or the whole network
is trained. The best epoch (validation accuracy) is saved as a weights file with its architecture,
config, class names and preprocessing, so `dl classify --weights-file best.safetensors` works at
once. Under `torchrun` it runs DistributedDataParallel through dlcli.training.distributed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dlcli.training.configs import TransferArgs
from dlcli.errors import DataError, InputError, WeightsError
from dlcli.progress import NullReporter, Reporter

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.results import TransferReport
    from dlcli.device import Runtime


# --- the model's head -------------------------------------------------------------------------------


def find_head(model: Any) -> tuple[str, Any]:
    """The classifier layer to replace: the last nn.Linear in module order, or the last Conv2d for
    all-convolutional nets (SqueezeNet's 1x1 classifier conv)."""
    import torch.nn as nn

    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1]
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if convs:
        return convs[-1]
    raise WeightsError(f"{type(model).__name__} has no Linear or Conv2d layer to use as a classifier head")


def replace_head(model: Any, num_classes: int) -> str:
    """Swap the head for a freshly initialised one with `num_classes` outputs; returns its name."""
    import torch.nn as nn

    name, old = find_head(model)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding, bias=old.bias is not None)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
    return name


def finetuned_config(spec: Any, num_classes: int) -> dict[str, Any]:
    """The build config that recreates the fine-tuned model exactly (what --weights-file will build)."""
    from dlcli.weights import registry

    arch = registry.get_arch(spec.arch)
    return {**arch.default_config, **spec.config, **arch.finetune_config, "num_classes": num_classes}


def _check_rebuild(spec: Any, config: dict[str, Any], model: Any) -> None:
    """Fail before training, not after, when the architecture cannot be rebuilt for these classes."""
    from dlcli.weights import loader, registry

    arch = registry.get_arch(spec.arch)
    try:
        fresh = arch.build(**config)
    except TypeError as exc:
        raise WeightsError(f"{spec.arch} cannot be built with {config} ({exc}); it cannot be fine-tuned here") from None
    if arch.finalize is not None:
        fresh = arch.finalize(fresh, config) or fresh
    loader.load_into(fresh, model.state_dict(), f"the fine-tuned {spec.arch}")


# --- data -----------------------------------------------------------------------------------------


def make_transforms(spec: Any, augment: bool) -> tuple[Callable[[Any], Any], Callable[[Any], Any], str]:
    """(train transform, eval transform, PIL mode). Training images get a random resized crop and a
    flip before the entry's own preprocessing, so every preset (ImageNet, Caffe, Lite…) still
    receives what it expects."""
    from torchvision.transforms import v2 as T

    from dlcli.weights.presets import input_shape_for, transform_for

    eval_tf, mode = transform_for(spec)
    if not augment:
        return eval_tf, eval_tf, mode
    side = input_shape_for(spec)[-1]
    pre = T.Compose([T.RandomResizedCrop(round(side * 8 / 7), scale=(0.35, 1.0), antialias=True),
                     T.RandomHorizontalFlip()])

    def train_tf(img: Any) -> Any:
        return eval_tf(pre(img))

    return train_tf, eval_tf, mode


# --- the loop ----------------------------------------------------------------------------------------


def _run_config(args: TransferArgs) -> dict[str, Any]:
    d = asdict(args)
    d["data_dir"] = str(Path(args.data_dir).resolve())
    for k in ("workers", "extra"):
        d.pop(k, None)
    return d


def evaluate(model: Any, loader: Any, runtime: Runtime) -> tuple[float, float, int]:
    """(mean loss, accuracy, n) on a loader."""
    import torch.nn.functional as F

    model.eval()
    total_loss, correct, n = 0.0, 0, 0
    with runtime.inference():
        for x, y in loader:
            x, y = runtime.to(x), runtime.to(y)
            logits = model(x)
            total_loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += int(y.numel())
    return (total_loss / n if n else float("nan")), (correct / n if n else 0.0), n


def train(args: TransferArgs, make_runtime: Callable[[str | None], Any], *, out: Path, resume: bool = False,
          force: bool = False, device: str | None = "auto", offline: bool = False,
          reporter: Reporter | None = None) -> TransferReport | None:
    """Fine-tune `args.base` on `args.data_dir` in the run folder `out`; returns a TransferReport
    (None on ranks other than 0).

    `make_runtime(device)` builds the device manager for a --device value; under torchrun each rank
    asks for its own (cuda:LOCAL_RANK with nccl, the CPU with gloo)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from dlcli.data.imagefolder import ImageListDataset, scan, split
    from dlcli.device import seed_everything
    from dlcli.results import Provenance, TransferReport
    from dlcli.training import distributed
    from dlcli.training.checkpoint import Interrupted, load_checkpoint, save_checkpoint
    from dlcli.training.run import RunFolder, check_run_folder
    from dlcli.training.schedules import lr_factor
    from dlcli.weights import loader, store

    reporter = reporter or NullReporter()
    if args.epochs < 1 or args.batch_size < 1:
        raise InputError("--epochs and --batch-size must be at least 1")
    if args.lr <= 0:
        raise InputError(f"--lr must be positive (got {args.lr})")
    ctx = distributed.setup(device)  # a no-op context without torchrun
    try:
        runtime = make_runtime(ctx.device_spec(device))
        rank0 = ctx.is_main
        if not rank0:
            reporter = NullReporter()
        out = Path(out).expanduser()
        ckpt_path = out / "checkpoint.pt"
        check_run_folder(out, resume=resume, force=force)  # before loading anything
        if runtime.seed is None:
            seed_everything(args.seed + ctx.rank)

        index = scan(args.data_dir)
        train_s, val_s = split(index, args.val_split, seed=args.seed)
        if not train_s:
            raise DataError(f"{args.data_dir}: no training images are left after the validation split")
        loaded = loader.load_model(args.base, task="classify", offline=offline, reporter=reporter)
        spec, model = loaded.spec, loaded.model
        num_classes = len(index.classes)
        head_name = replace_head(model, num_classes)
        config = finetuned_config(spec, num_classes)
        _check_rebuild(spec, config, model)

        head = model.get_submodule(head_name)
        head_params = {id(p) for p in head.parameters()}
        if args.freeze_backbone:
            for p in model.parameters():
                p.requires_grad_(id(p) in head_params)
        model = runtime.place(model)
        train_tf, eval_tf, mode = make_transforms(spec, args.augment)
        train_ds = ImageListDataset(train_s, train_tf, mode)
        val_ds = ImageListDataset(val_s, eval_tf, mode)

        def epoch_loader(epoch: int, skip: int = 0) -> Any:
            # The order of an epoch depends on (seed, epoch) only, so a resumed run sees the same
            # batches (skipping the `skip` it already trained); under DDP each rank takes its shard
            # of the same permutation. The loader gets its own generator: drawing its base seed from
            # the global one would shift the dropout masks of a resumed run by one draw.
            perm = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
            order = ctx.shard(perm).tolist()[skip * args.batch_size:]
            return DataLoader(train_ds, batch_size=args.batch_size, sampler=order, num_workers=args.workers,
                              generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))

        steps_per_epoch = len(epoch_loader(0))
        val_dl = DataLoader(val_ds, batch_size=args.batch_size, num_workers=args.workers) if val_s else None

        backbone = [p for p in model.parameters() if id(p) not in head_params and p.requires_grad]
        groups = [{"params": list(head.parameters()), "lr": args.lr}]
        if backbone:
            groups.append({"params": backbone, "lr": args.lr * 0.1})  # keep the pretrained features close
        optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)
        steps = args.epochs * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor("cosine", steps, warmup=max(1, min(steps // 10, 100))))
        use_scaler = runtime.device.type == "cuda" and runtime.dtype == torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        ddp_model = ctx.wrap(model)

        history: list[dict[str, Any]] = []
        within, partial = 0, [0, 0.0, 0]  # batches of the current epoch already trained, and their sums
        best_acc, best_epoch, start_epoch = -1.0, 0, 0
        run = RunFolder.open(out, task="classify", config=_run_config(args), resume=resume, force=force,
                             writer=rank0, reporter=reporter)
        if resume:
            state = load_checkpoint(ckpt_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
            saved = state["config"]
            mine = json.loads(json.dumps(_run_config(args), sort_keys=True, default=str))
            changed = sorted(k for k in mine if k != "epochs" and saved.get(k) != mine[k])
            if changed:
                raise InputError(f"--resume with different settings ({', '.join(changed)}); use the run's own "
                                 "options, or --force to start over")
            progress = state["progress"]
            start_epoch, best_acc, best_epoch = progress["epoch"], progress["best_acc"], progress["best_epoch"]
            within, partial = int(progress.get("within", 0)), progress.get("partial", [0, 0.0, 0])
            history = list(progress["history"])
            reporter.message(f"resumed {out} after epoch {start_epoch}")

        best_file = run.best
        meta = {
            "arch": spec.arch, "task": "classify", "config": config, "labels": list(index.classes),
            "preprocess": spec.preprocess, "preprocess_args": dict(spec.preprocess_args),
            "license": spec.license, "base": spec.name,
            "recipe": (f"transfer learning from {spec.name}: {'head only' if args.freeze_backbone else 'full fine-tune'}, "
                       f"AdamW lr {args.lr}, cosine, batch {args.batch_size}, "
                       f"{'augmented' if args.augment else 'no augmentation'}"),
        }
        t0 = time.perf_counter()
        epoch, done, seen, loss_sum, correct = start_epoch, 0, 0, 0.0, 0
        try:
            for epoch in range(start_epoch, args.epochs):
                skip = within if epoch == start_epoch else 0
                done = skip
                seen, loss_sum, correct = partial if skip else (0, 0.0, 0)
                train_dl = epoch_loader(epoch, skip)
                # A frozen backbone stays in eval mode (its batch-norm statistics and dropout as at
                # inference); the head is a single layer, so its mode does not matter.
                ddp_model.train(not args.freeze_backbone)
                reporter.start(f"epoch {epoch + 1}/{args.epochs}", float(skip + len(train_dl)))
                if skip:
                    reporter.advance(skip)
                for x, y in train_dl:
                    x, y = runtime.to(x), runtime.to(y)
                    with runtime.autocast():
                        logits = ddp_model(x)
                        loss = F.cross_entropy(logits.float(), y)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    batch_loss = float(loss.detach())
                    seen += int(y.numel())
                    loss_sum += batch_loss * int(y.numel())
                    correct += int((logits.detach().argmax(1) == y).sum())
                    done += 1
                    reporter.advance(1, loss=batch_loss)
                reporter.finish()
                seen, loss_sum, correct = ctx.all_reduce_sum([seen, loss_sum, correct])
                train_loss, train_acc = loss_sum / max(1, seen), correct / max(1, seen)
                if val_dl is not None:
                    val_loss, val_acc, _ = evaluate(model, val_dl, runtime)
                else:
                    val_loss, val_acc = float("nan"), train_acc
                row = {"epoch": epoch + 1, "train_loss": round(train_loss, 4), "train_acc": round(train_acc, 4),
                       "val_loss": round(val_loss, 4) if val_loss == val_loss else None, "val_acc": round(val_acc, 4),
                       "seconds": round(time.perf_counter() - t0, 1)}
                history.append(row)
                reporter.row(row)
                at = (epoch + 1) * steps_per_epoch
                run.log("train", {"loss": train_loss, "accuracy": train_acc, "lr": optimizer.param_groups[0]["lr"]},
                        step=at, epoch=epoch + 1)
                if val_dl is not None:
                    run.log("val", {"loss": val_loss, "accuracy": val_acc}, step=at, epoch=epoch + 1)
                if val_acc > best_acc:
                    best_acc, best_epoch = val_acc, epoch + 1
                    run.save_weights("best", model.state_dict(), {
                        **meta, "metrics": {"val_accuracy": val_acc, "epoch": epoch + 1,
                                            "train_images": len(train_s), "val_images": len(val_s)}})
                    run.note_best("val_accuracy" if val_dl is not None else "train_accuracy", val_acc, step=at,
                                  epoch=epoch + 1)
                if rank0:
                    save_checkpoint(ckpt_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                    progress={"epoch": epoch + 1, "best_acc": best_acc, "best_epoch": best_epoch,
                                              "history": history},
                                    config=_run_config(args))
        except KeyboardInterrupt:
            reporter.finish()
            if rank0:
                save_checkpoint(ckpt_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                progress={"epoch": epoch, "within": done,
                                          "partial": [seen, loss_sum, correct],
                                          "best_acc": best_acc, "best_epoch": best_epoch, "history": history},
                                config=_run_config(args))
            run.interrupted()
            raise Interrupted(ckpt_path) from None
        run.save_weights("last", model.state_dict(), {
            **meta, "metrics": {"val_accuracy": history[-1]["val_acc"] if history else None, "epoch": args.epochs}})
        run.finish(epochs=args.epochs, best_val_accuracy=best_acc, best_epoch=best_epoch, world_size=ctx.world_size)
        if not rank0:
            return None
        if not best_file.is_file():
            raise DataError(f"no epoch finished, so {best_file} was not written")
        return TransferReport(
            base=spec.name, classes=index.classes, train_images=len(train_s), val_images=len(val_s),
            epochs=args.epochs, best_epoch=best_epoch, best_val_accuracy=best_acc, history=tuple(history),
            weights_file=str(best_file), weights_sha256=store.sha256_file(best_file), out=str(out),
            seconds=time.perf_counter() - t0, provenance=Provenance.collect(runtime, spec.name, loaded.sha256),
        )
    finally:
        ctx.close()
