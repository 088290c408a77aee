"""Training and evaluating the book's DeepConvNet on MNIST, fast on a CPU.

The whole data set lives in memory as uint8 (47 MB); a batch is gathered, scaled to [0, 1] and
(optionally) augmented with one batched affine warp, so the loop spends its time in the network.
Every random choice is derived from (seed, rank, epoch, step): the shuffle of an epoch, the
augmentation of a batch and the dropout masks of a step. A run interrupted anywhere therefore
resumes to the same weights as an uninterrupted run, and DDP ranks draw different masks.

Used by `dl train-mnist` (dlcli/cli/commands/train_mnist.py) and benchmarks/mnist_train.py.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
import torch.nn.functional as F

from dlcli.results import MnistEpoch
from dlcli.training.configs import MNIST_SCHEDULES, MnistTrainConfig
from dlcli.data.mnist import file_hashes, load_mnist, to_float
from dlcli.evaluation.mnist import confused_pairs, confusion_matrix, misclassified_grid, predict_probs
from dlcli.errors import InputError
from dlcli.models.deepconvnet import DeepConvNet
from dlcli.progress import NullReporter, Reporter
from dlcli.training.checkpoint import Interrupted, load_checkpoint, save_checkpoint
from dlcli.training.distributed import Dist
from dlcli.training.run import RunFolder, check_run_folder
from dlcli.training.schedules import lr_factor

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime

LABELS = [str(d) for d in range(10)]
SCHEDULES = MNIST_SCHEDULES
BOOK_ACCURACY = 0.9938  # the book's reported test accuracy for this network and recipe
# Written beside a (single-net) run's own files; --force removes them with the run.
OWNED_EXTRA = ("misclassified.png", "confusion.png", "summary.json")


@dataclass
class MemberResult:
    seed: int
    epochs: list[MnistEpoch]
    test_acc: float
    test_errors: int
    best_acc: float
    best_epoch: int
    out_dir: Path | None
    steps: int = 0
    """Training steps taken (with --budget: those that fitted in it)."""
    planned_steps: int = 0
    """Steps the schedule was laid out for (with --budget: fitted to the budget after measuring the speed)."""
    train_seconds: float = 0.0
    """Wall time of the member, evaluations included."""
    probs: torch.Tensor | None = field(default=None, repr=False)
    model: torch.nn.Module | None = field(default=None, repr=False)

    def time_to(self, accuracy: float) -> float | None:
        for e in self.epochs:
            if e.test_acc >= accuracy:
                return e.elapsed
        return None


# --- data -------------------------------------------------------------------------------------


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix-style), so nearby seeds give unrelated streams."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h ^= (p + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2)) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def augment(x: torch.Tensor, gen: torch.Generator, *, degrees: float = 10.0, scale: tuple[float, float] = (0.9, 1.1),
            shift_px: float = 2.0) -> torch.Tensor:
    """One random affine warp per image (rotation, isotropic scale, shift), batched through
    affine_grid/grid_sample. No flips: a mirrored 2 is not a 2."""
    n, _, h, w = x.shape
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(degrees)
    s = scale[0] + torch.rand(n, generator=gen) * (scale[1] - scale[0])
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2.0 * shift_px / w)  # grid units span 2
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class EpochBatches(torch.utils.data.Dataset):
    """Batch `i` of one epoch of one rank: indices from the epoch's seeded shuffle, its own
    augmentation generator. Indexable, so a DataLoader's workers can build batches in parallel
    and a resumed run can start at any step."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, batch: int,
                 augment_seed: int | None) -> None:
        self.images, self.labels, self.indices, self.batch = images, labels, indices, batch
        self.augment_seed = augment_seed

    def __len__(self) -> int:
        return -(-self.indices.numel() // self.batch)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.indices[step * self.batch : (step + 1) * self.batch]
        x = to_float(self.images[idx])
        if self.augment_seed is not None:
            gen = torch.Generator().manual_seed(_mix(self.augment_seed, step))
            x = augment(x, gen)
        return x, self.labels[idx]


def _iterate(ds: EpochBatches, start: int, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if workers == 0:
        for step in range(start, len(ds)):
            yield ds[step]
        return
    sub = torch.utils.data.Subset(ds, range(start, len(ds)))
    loader = torch.utils.data.DataLoader(sub, batch_size=None, shuffle=False, num_workers=workers,
                                         persistent_workers=False, prefetch_factor=4)
    yield from loader


# --- weights files ----------------------------------------------------------------------------


def weights_meta(cfg: MnistTrainConfig, metrics: dict[str, Any], data_hashes: dict[str, str], seed: int) -> dict[str, Any]:
    """What `dl classify --weights-file` needs beside the tensors (see store.save_weights_file)."""
    return {
        "arch": "deepconvnet",
        "task": "classify",
        "config": {},
        "labels": LABELS,
        "preprocess": "mnist",
        "preprocess_args": {},
        "metrics": metrics,
        "recipe": cfg.recipe().replace(f"seed {cfg.seed}", f"seed {seed}"),
        "license": "MIT (weights trained by dlcli on MNIST, CC BY-SA 3.0)",
        "extra": {"seed": seed, "data_sha256": data_hashes, "train_config": cfg.identity(), "domain": "digits"},
    }


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return getattr(model, "module", model).state_dict()


# --- weight averaging and time budgets -----------------------------------------------------------


class _Average:
    """An exponential moving average of a model's weights, kept in a copy of the model (so it is
    evaluated and saved like any net). The decay ramps up as (1 + t) / (10 + t) until it reaches
    `decay`, so the first steps' random weights fade fast; it depends on the step counter only,
    so a resumed run averages exactly as an uninterrupted one."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        avg = [p for p in self.model.parameters()]
        torch._foreach_lerp_(avg, [p.detach() for p in model.parameters()], 1.0 - d)

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


CALIBRATION_STEPS = 24  # timed steps (after 3 untimed) that measure the speed for --budget...
CALIBRATION_SHARE = 0.05  # ...or fewer (at least 2), when they would take more than this share of it
BUDGET_MARGIN = 0.04  # share of a budget kept back for slower steps later (other processes, caches)


def fit_budget_steps(seconds: float, steps_per_s: float, eval_s: float, steps_per_epoch: int, start: int = 0) -> int:
    """The most steps whose training plus one evaluation per finished epoch fit in `seconds`
    (the evaluation after the last step is outside the budget), counted from `start` steps into an
    epoch; at least 1."""
    usable = seconds * (1 - BUDGET_MARGIN)
    best, epochs, previous = 1, 1, 0
    while True:
        boundary = (steps_per_epoch - start) + (epochs - 1) * steps_per_epoch  # steps to the end of epoch `epochs`
        room = usable - (epochs - 1) * eval_s  # evaluations of the epochs finished before then
        if room <= 0:
            break
        steps = min(boundary, int(room * steps_per_s))
        if steps <= previous:
            break
        best = max(best, steps)
        if steps < boundary:
            break
        epochs, previous = epochs + 1, boundary
    return best


def _train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                runtime: Runtime, cfg: MnistTrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimiser step on a batch (the run's and the budget calibration's): (y on the device,
    logits, loss)."""
    x, y = runtime.to(x, channels_last=cfg.channels_last), runtime.to(y)
    with runtime.autocast():
        logits = net(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return y, logits, loss


REFIT_AT = 50  # steps into a budget run when the speed measured in training replaces the calibration's


def _fit_budget(cfg: MnistTrainConfig, model: torch.nn.Module, train_x: torch.Tensor, train_y: torch.Tensor,
                test_x: torch.Tensor, runtime: Runtime, per_rank: int, steps_per_epoch: int, seconds: float,
                member_seed: int, dist: Dist, reporter: Reporter) -> int:
    """Measure the speed of training steps and of evaluation on throwaway copies of the net (the
    run itself starts from the untouched initial weights), then fit the steps to the budget."""
    trial = copy.deepcopy(model).train()
    opt = torch.optim.Adam(trial.parameters(), lr=cfg.lr * 0.01)
    gen = torch.Generator().manual_seed(_mix(member_seed, 3))
    n = CALIBRATION_STEPS + 3
    idx = torch.randint(0, train_x.shape[0], (n, per_rank), generator=gen)
    t0, timed = 0.0, 0
    for i in range(n):
        if i == 3:
            t0 = time.perf_counter()
        elif i > 4 and time.perf_counter() - t0 > CALIBRATION_SHARE * seconds:
            break
        x = to_float(train_x[idx[i]])
        if cfg.augment:
            x = augment(x, gen)
        _train_step(trial, opt, x, train_y[idx[i]], runtime, cfg)
        timed = max(0, i - 2)
    runtime.synchronize()
    step_s = (time.perf_counter() - t0) / timed
    sample = test_x[: min(2000, test_x.shape[0])]
    t1 = time.perf_counter()
    predict_probs(trial, sample, runtime, channels_last=cfg.channels_last)
    eval_s = (time.perf_counter() - t1) * test_x.shape[0] / max(1, sample.shape[0])
    if dist.active:
        # Every rank must fit the same number of steps: average the measurements. DDP steps also
        # wait for the gradient all-reduce and the slowest rank, hence the 10% more per step.
        step_s, eval_s, seconds = (v / dist.world_size for v in dist.all_reduce_sum([step_s, eval_s, seconds]))
        step_s *= 1.1
    total = fit_budget_steps(seconds, 1.0 / step_s, eval_s, steps_per_epoch)
    reporter.message(f"budget {cfg.budget}: {per_rank / step_s:,.0f} images/s per process over {timed} "
                     f"steps, {eval_s:.1f} s per evaluation: the schedule is fitted to {total:,} steps "
                     f"({total / steps_per_epoch:.2f} epochs); fitted again as training measures its speed")
    return total, eval_s


# --- the loop ---------------------------------------------------------------------------------


def train_member(
    cfg: MnistTrainConfig,
    data: dict[str, torch.Tensor],
    runtime: Runtime,
    *,
    member_seed: int,
    out_dir: Path | None,
    dist: Dist | None = None,
    reporter: Reporter | None = None,
    resume: bool = False,
    force: bool = False,
    data_hashes: dict[str, str] | None = None,
    label: str = "",
    started: float | None = None,
) -> MemberResult:
    """Train one DeepConvNet. With `out_dir`, the net's run folder (dlcli/training/run.py:
    checkpoint.pt, metrics.jsonl, best/last.safetensors; rank 0 writes); `resume` continues from
    its checkpoint, `force` starts over in a folder that holds a run. `started` (a perf_counter
    reading) is when the clock of --budget started, if before this call (loading the data)."""
    dist = dist or Dist()
    reporter = reporter or NullReporter()
    main = dist.is_main
    train_x, train_y = data["train_x"], data["train_y"]
    if cfg.limit:
        train_x, train_y = train_x[: cfg.limit], train_y[: cfg.limit]
    n_train = train_x.shape[0]
    per_rank = max(1, cfg.batch_size // dist.world_size)
    steps_per_epoch = -(-(-(-n_train // dist.world_size)) // per_rank)
    total_steps = steps_per_epoch * cfg.epochs
    budget = cfg.budget_seconds()
    t_start = time.perf_counter() if started is None else started

    torch.manual_seed(member_seed)
    model = runtime.place(DeepConvNet(logit_dropout=None if cfg.logit_dropout else 0.0), channels_last=cfg.channels_last)
    # The weights that are evaluated and saved: the model itself, or its moving average.
    average = _Average(model, cfg.ema) if cfg.ema else None
    shown = average.model if average is not None else model

    epoch, step, history, best = 0, 0, [], {"acc": -1.0, "epoch": 0}
    elapsed0 = 0.0
    identity = {**cfg.identity(), "member_seed": member_seed, "world_size": dist.world_size}
    run = None
    if out_dir is not None:
        run = RunFolder.open(out_dir, task="mnist", config=identity, resume=resume, force=force, writer=main,
                             owned_extra=OWNED_EXTRA, reporter=reporter)
    elif resume:
        raise InputError("resuming needs the run's folder")
    ckpt = run.checkpoint if run is not None else None
    eval_s = 0.0
    if resume:
        if budget is not None:  # the schedule as last fitted
            saved_state = torch.load(ckpt, map_location="cpu", weights_only=True)
            total_steps = int(json.loads(saved_state["progress"])["total_steps"])
    elif budget is not None:
        total_steps, eval_s = _fit_budget(cfg, model, train_x, train_y, data["test_x"], runtime, per_rank, steps_per_epoch,
                                  budget - (time.perf_counter() - t_start), member_seed, dist, reporter)
    n_epochs = -(-total_steps // steps_per_epoch)

    def schedule(total: int) -> Any:
        return lr_factor(cfg.lr_schedule, total, warmup=round(cfg.warmup * total))

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(total_steps))
    ddp_model = dist.wrap(model)
    if resume:
        state = load_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, restore_rng=False)
        if average is not None:
            average.load(state["extra"]["average"])
        # Only the number of epochs may change when a run continues; options added since a run
        # was saved count as their defaults.
        defaults = MnistTrainConfig().identity()
        diff = sorted(k for k in identity if k != "epochs" and state["config"].get(k, defaults.get(k)) != identity[k])
        if diff:
            raise InputError(f"--resume {out_dir}: the run was started with different options ({', '.join(diff)}); "
                             "give the same options, or a new --out")
        prog = state["progress"]
        epoch, step, best = prog["epoch"], prog["step"], prog["best"]
        history = [MnistEpoch(**h) for h in prog["history"]]
        elapsed0 = prog.get("elapsed", 0.0)

    def checkpoint() -> None:
        if main and ckpt is not None:
            save_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, config=identity,
                            progress={"epoch": epoch, "step": step, "best": best, "elapsed": elapsed0 + time.perf_counter() - t_start,
                                      "history": [asdict(h) for h in history], "total_steps": total_steps},
                            extra_state={"average": average.state()} if average is not None else None)

    def evaluate() -> tuple[torch.Tensor, int, float]:
        probs = predict_probs(shown, data["test_x"], runtime, channels_last=cfg.channels_last)
        errors = int((probs.argmax(1) != data["test_y"]).sum())
        return probs, errors, 1.0 - errors / data["test_y"].numel()

    def out_of_time() -> bool:
        # Every rank must agree, or DDP would wait forever for the one that stopped.
        if budget is None:
            return False
        late = float(elapsed0 + time.perf_counter() - t_start >= budget)
        return dist.all_reduce_sum([late])[0] > 0 if dist.active else bool(late)

    def refit(steps_done: int, step_s: float) -> None:
        """Lay the schedule out again over the steps that fit in what is left of the budget, at the
        speed measured in training (the machine's load may have changed since calibration). The
        rate moves a little where the run is on its curve; a resumed run uses the last fit."""
        nonlocal total_steps, n_epochs
        left = budget - (elapsed0 + time.perf_counter() - t_start)  # type: ignore[operator]
        measured = [step_s, eval_s, left]
        if dist.active:  # every rank must lay out the same steps
            measured = [v / dist.world_size for v in dist.all_reduce_sum(measured)]
        more = fit_budget_steps(max(measured[2], 0.0), 1.0 / max(measured[0], 1e-9), measured[1], steps_per_epoch,
                                steps_done % steps_per_epoch)
        total_steps = steps_done + (more if measured[2] > 0 else 0)
        n_epochs = -(-total_steps // steps_per_epoch)
        scheduler.lr_lambdas[0] = schedule(total_steps)

    stopped, final = False, None
    steps_done = epoch * steps_per_epoch + step
    ddp_model.train()
    try:
        while epoch < n_epochs and not stopped:
            # The last evaluation took the rest of the budget. A budget that loading the data and
            # measuring the speed used up still trains one step, as fit_budget_steps promises.
            if epoch * steps_per_epoch + step > 0 and out_of_time():
                stopped = True
                break
            perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(_mix(member_seed, epoch)))
            ds = EpochBatches(train_x, train_y, dist.shard(perm), per_rank,
                              _mix(member_seed, dist.rank, epoch, 1) if cfg.augment else None)
            in_epoch = min(len(ds), total_steps - epoch * steps_per_epoch)  # the last epoch of a budget may be cut
            reporter.start(f"{label}epoch {epoch + 1}/{n_epochs}", total=in_epoch, unit="batch")
            if step:
                reporter.advance(step)
            sums = torch.zeros(3, dtype=torch.float64)  # loss*n, correct, n (this rank, this epoch part)
            started_at = step
            t0 = time.perf_counter()
            for x, y in _iterate(ds, step, cfg.workers):
                if step >= in_epoch:
                    break
                # Dropout masks come from the global generator: seed it per step so a resumed run
                # draws the same masks and ranks draw different ones.
                torch.manual_seed(_mix(member_seed, dist.rank, epoch, step, 2))
                y, logits, loss = _train_step(ddp_model, optimizer, x, y, runtime, cfg)
                scheduler.step()
                if average is not None:
                    average.update(model, epoch * steps_per_epoch + step)
                step += 1
                if budget is not None and epoch * steps_per_epoch + step == REFIT_AT and not resume:
                    refit(REFIT_AT, (time.perf_counter() - t0) / max(1, step - started_at))
                    in_epoch = min(len(ds), total_steps - epoch * steps_per_epoch)
                if out_of_time():
                    stopped = True
                with torch.no_grad():
                    sums += torch.tensor([loss.item() * y.numel(), (logits.argmax(1) == y).sum().item(), y.numel()],
                                         dtype=torch.float64)
                reporter.advance(1, loss=round(loss.item(), 4))
                if ckpt is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < in_epoch:
                    checkpoint()  # the epoch's running loss restarts on resume; the weights do not
                if stopped:
                    break
            train_s = time.perf_counter() - t0
            reporter.finish()
            loss_sum, correct, seen = dist.all_reduce_sum(sums)
            ips = dist.all_reduce_sum([seen / max(train_s, 1e-9)])[0]
            t_eval = time.perf_counter()
            final = probs, errors, acc = evaluate()
            steps_done = epoch * steps_per_epoch + step
            if budget is not None and not stopped and steps_done < total_steps:
                eval_s = time.perf_counter() - t_eval
                refit(steps_done, train_s / max(1, step - started_at))
            stats = MnistEpoch(epoch + 1, loss_sum / max(seen, 1), correct / max(seen, 1), acc, errors,
                               time.perf_counter() - t0, ips, optimizer.param_groups[0]["lr"],
                               elapsed0 + time.perf_counter() - t_start)
            history.append(stats)
            epoch, step = epoch + 1, 0
            if run is not None:
                at = steps_done
                run.log("train", {"loss": stats.loss, "accuracy": stats.train_acc, "lr": stats.lr,
                                  "images_per_s": ips, "seconds": stats.seconds}, step=at, epoch=epoch)
                run.log("test", {"accuracy": acc, "errors": errors}, step=at, epoch=epoch)
                if run.takes_images:
                    grid = misclassified_grid(data["test_x"], data["test_y"], probs.argmax(1))
                    if grid is not None:
                        run.log_image("test/misclassified", grid, step=at)
            if acc > best["acc"]:
                best = {"acc": acc, "epoch": epoch}
                if run is not None:
                    run.save_weights("best", _state(shown), weights_meta(
                        cfg, {"test_accuracy": acc, "test_errors": errors, "epoch": epoch}, data_hashes or {}, member_seed))
                    run.note_best("test_accuracy", acc, step=steps_done, epoch=epoch)
            reporter.row({"member": label.strip(": ") or "-", "epoch": epoch, "loss": round(stats.loss, 4),
                          "train acc": round(stats.train_acc, 4), "test acc": round(acc, 4), "errors": errors,
                          "seconds": round(stats.seconds, 1), "images/s": round(ips)})
            checkpoint()
    except KeyboardInterrupt:
        reporter.finish()
        if run is None or ckpt is None:
            raise
        checkpoint()
        run.interrupted()
        raise Interrupted(ckpt) from None

    # The last epoch's evaluation is the final one: the weights have not changed since.
    probs, errors, acc = final if final is not None else evaluate()
    if best["acc"] < 0:  # a budget spent before the first epoch ended
        best = {"acc": acc, "epoch": epoch}
    if run is not None:
        run.save_weights("last", _state(shown), weights_meta(
            cfg, {"test_accuracy": acc, "test_errors": errors, "epoch": epoch}, data_hashes or {}, member_seed))
        run.finish(epochs=epoch, test_accuracy=acc, test_errors=errors, world_size=dist.world_size)
    dist.barrier()
    return MemberResult(member_seed, history, acc, errors, best["acc"], best["epoch"], out_dir, steps_done,
                        total_steps, elapsed0 + time.perf_counter() - t_start, probs, shown)


def load_data(data_dir: Path) -> dict[str, torch.Tensor]:
    train_x, train_y = load_mnist(data_dir, "train")
    test_x, test_y = load_mnist(data_dir, "test")
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


@dataclass
class TrainOutcome:
    members: list[MemberResult]
    accuracy: float
    errors: int
    confusion: list[list[int]]
    pairs: list[dict[str, Any]]
    misclassified_png: Path | None
    ensemble_accuracy: float | None = None
    ensemble_errors: int | None = None


def train(
    cfg: MnistTrainConfig,
    data_dir: Path,
    runtime: Runtime,
    *,
    out_dir: Path | None,
    dist: Dist | None = None,
    reporter: Reporter | None = None,
    resume: bool = False,
    force: bool = False,
) -> TrainOutcome:
    """`dl train-mnist`: train cfg.ensemble nets (one folder each when more than one), then
    report the final accuracy, confusion matrix and misclassified digits of the single net or
    of the ensemble (mean of the members' probabilities)."""
    cfg.check()
    dist = dist or Dist()
    reporter = reporter or NullReporter()
    started = time.perf_counter()  # a --budget counts from here: loading the data is part of it
    data = load_data(data_dir)
    hashes = file_hashes(data_dir)
    members = []
    for k in range(cfg.ensemble):
        sub = None if out_dir is None else (out_dir if cfg.ensemble == 1 else out_dir / f"member-{k + 1}")
        member_resume = resume and sub is not None and (sub / "checkpoint.pt").is_file()
        if resume and sub is not None and not member_resume and k == 0:
            check_run_folder(out_dir, resume=True, force=False, members=True)  # says there is no run to continue
        label = f"net {k + 1}/{cfg.ensemble}: " if cfg.ensemble > 1 else ""
        try:
            members.append(train_member(cfg, data, runtime, member_seed=cfg.seed + k, out_dir=sub, dist=dist,
                                        reporter=reporter, resume=member_resume, force=force and not member_resume,
                                        data_hashes=hashes, label=label, started=started if k == 0 else None))
        except Interrupted as exc:
            if out_dir is None or cfg.ensemble == 1:
                raise
            # The run is resumed from its top folder (finished members are kept, this one continues).
            exc.message = f"interrupted; checkpoint saved to {exc.checkpoint}; continue with --resume {out_dir}"
            raise
    probs = torch.stack([m.probs for m in members]).mean(0)  # type: ignore[misc]
    pred = probs.argmax(1)
    errors = int((pred != data["test_y"]).sum())
    acc = 1.0 - errors / data["test_y"].numel()
    cm = confusion_matrix(pred, data["test_y"])
    png = None
    if dist.is_main and out_dir is not None:
        grid = misclassified_grid(data["test_x"], data["test_y"], pred)
        if grid is not None:
            from dlcli.atomic import atomic_target

            png = out_dir / "misclassified.png"
            with atomic_target(png) as tmp:
                grid.save(tmp, format="PNG")
        from dlcli import plots

        if plots.available():  # beside misclassified.png: which digits are taken for which
            plots.confusion_matrix(cm, LABELS, out_dir / "confusion.png",
                                   title=f"MNIST test: prediction vs truth ({acc:.2%})")
        summary = {"accuracy": acc, "errors": errors, "confusion": cm, "members": [
            {"seed": m.seed, "test_acc": m.test_acc, "test_errors": m.test_errors, "best_acc": m.best_acc,
             "best_epoch": m.best_epoch} for m in members]}
        from dlcli.atomic import atomic_target

        with atomic_target(out_dir / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return TrainOutcome(members, acc, errors, cm, confused_pairs(cm), png,
                        acc if cfg.ensemble > 1 else None, errors if cfg.ensemble > 1 else None)


