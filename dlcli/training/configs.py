"""The options of every trainer, as plain dataclasses (no torch import): one source for the
trainers, the checkpoints that must match on --resume, and the CLI, which turns each field into an
option (dlcli/cli/config_options.py: the docstring under a field is its help, `metadata["cli"]`
adds short flags and bounds)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dlcli.errors import InputError

MNIST_SCHEDULES = ("none", "step", "cosine", "onecycle")
BUDGET_MAX_S = 7 * 24 * 3600.0  # a week: a longer "budget" is a typo

# Named recipes for `dl train-mnist --recipe`: the values a recipe sets for every option the user
# did not give. The network is always the book's DeepConvNet; `book` is the book's recipe.
MNIST_RECIPES: dict[str, dict[str, Any]] = {
    "book": {"epochs": 20, "batch_size": 100, "lr": 1e-3, "lr_schedule": "none", "warmup": 0.0, "augment": False,
             "label_smoothing": 0.0, "logit_dropout": True, "ema": 0.0},
    # Time to 99.38%: a one-cycle rate peaking at 3x the book's, light augmentation, label smoothing
    # 0.1, no dropout on the logits (the hidden layer keeps the book's 0.5) and an exponential
    # average of the weights over the last ~1,000 steps. Measured in benchmarks/mnist_train.py --seeds.
    "fast": {"epochs": 5, "batch_size": 100, "lr": 3e-3, "lr_schedule": "onecycle", "warmup": 0.25, "augment": True,
             "label_smoothing": 0.1, "logit_dropout": False, "ema": 0.999},
    # For the bundled model: the fast recipe's ingredients over the book's 20 epochs.
    "best": {"epochs": 20, "batch_size": 100, "lr": 3e-3, "lr_schedule": "onecycle", "warmup": 0.2, "augment": True,
             "label_smoothing": 0.1, "logit_dropout": False, "ema": 0.999},
}


def parse_budget(text: str) -> float:
    """Seconds in a budget like `5m`, `90s`, `1h`, `2m30s` or a plain number of seconds."""
    import re

    raw = str(text).strip().lower()
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", raw)
    if not raw or m is None or not any(m.groups()):
        raise InputError(f"--budget {text!r}: give a duration such as 90s, 5m, 1h or 2m30s")
    h, mi, se = (float(g) if g else 0.0 for g in m.groups())
    seconds = h * 3600 + mi * 60 + se
    if not (0 < seconds <= BUDGET_MAX_S):
        raise InputError(f"--budget {text!r}: must be more than 0 and at most a week")
    return seconds


def cli(**hints: Any) -> dict[str, Any]:
    """Field metadata for the generated CLI option (flag, aliases, min, max, hidden, help, skip)."""
    return {"cli": hints}


@dataclass
class MnistTrainConfig:
    """What defines a run (and must match when it is resumed)."""

    epochs: int = field(default=20, metadata=cli(aliases=("-e",), min=1))
    """Passes over the training set (the book: 20)."""
    batch_size: int = field(default=100, metadata=cli(aliases=("-b",), min=1))
    """Global batch size, split over DDP ranks (the book: 100)."""
    lr: float = 1e-3
    """Adam learning rate (the book: 0.001)."""
    augment: bool = False
    """Random rotation (+-10 deg), scale (0.9-1.1) and shift (+-2 px) per image; never flips."""
    lr_schedule: str = "none"
    """none | step (x0.1 at 50% and 75% of the run) | cosine (to 0 over the run, per step) | onecycle (up to --lr over the warm-up, then cosine to 0)."""
    recipe_name: str = field(default="book", metadata=cli(flag="--recipe"))
    """book | fast | best: sets epochs, rate, schedule, augmentation, label smoothing, logit dropout and weight averaging (printed); any option you give still wins."""
    warmup: float = field(default=0.0, metadata=cli(min=0.0, max=0.9))
    """Share of the steps spent raising the rate (onecycle: 0 means a quarter)."""
    label_smoothing: float = field(default=0.0, metadata=cli(min=0.0, max=0.5))
    """Cross-entropy against targets smoothed by this much (the book: 0)."""
    logit_dropout: bool = True
    """Dropout 0.5 on the logits as well as on the hidden layer (the book's placement)."""
    ema: float = field(default=0.0, metadata=cli(min=0.0, max=0.99999))
    """Evaluate and save an exponential moving average of the weights with this decay per step (0.999: about the last 1,000 steps; 0: off)."""
    budget: str | None = None
    """Train for this wall-clock time (90s, 5m, 1h; per net of an ensemble): the first steps measure the speed, the schedule is fitted to the steps that fit, training stops in time and best.safetensors keeps the best net. Replaces --epochs; without --recipe, the fast recipe."""
    seed: int = field(default=0, metadata=cli(skip=True))
    """Seed of the first net (the global --seed); ensemble member k uses seed + k."""
    limit: int | None = field(default=None, metadata=cli(min=1))
    """Train on the first N training images only (smoke runs)."""
    ensemble: int = field(default=1, metadata=cli(min=1))
    """Number of nets trained; their averaged probabilities are the ensemble's prediction."""
    channels_last: bool = True
    """NHWC activations: faster convolutions on CPUs (measured in benchmarks/mnist_train.py)."""
    workers: int = field(default=0, metadata=cli(min=0))
    """Processes preparing batches (0: in the training process)."""
    checkpoint_every: int = field(default=200, metadata=cli(min=1))
    """Steps between checkpoints (one is also written at every epoch end and on Ctrl-C)."""

    def with_recipe(self, given: Any = ()) -> "MnistTrainConfig":
        """This config with its recipe's values for every field not in `given` (the options the
        user gave on the command line)."""
        from dataclasses import replace

        given = set(given)
        name = self.recipe_name
        if self.budget and "recipe_name" not in given:
            name = "fast"  # a budget needs a schedule that anneals by its end; the book's rate is constant
        if name not in MNIST_RECIPES:
            raise InputError(f"unknown --recipe {name!r}: use {', '.join(MNIST_RECIPES)}")
        return replace(self, recipe_name=name, **{k: v for k, v in MNIST_RECIPES[name].items() if k not in given})

    def describe_recipe(self) -> str:
        """What the recipe (and any option given) sets, in words, as printed before training."""
        sched = {"none": "constant rate", "step": "rate x0.1 at 50% and 75%", "cosine": "cosine to 0",
                 "onecycle": f"one-cycle (up over {self.warmup or 0.25:.0%}, cosine to 0)"}.get(self.lr_schedule,
                                                                                              self.lr_schedule)
        if self.lr_schedule != "onecycle" and self.warmup:
            sched += f" after {self.warmup:.0%} warm-up"
        length = f"budget {self.budget}" if self.budget else f"{self.epochs} epochs"
        return (f"recipe {self.recipe_name}: Adam, peak rate {self.lr:g}, {sched}, {length}, batch {self.batch_size}, "
                + ("augmentation (rotate 10, scale 0.9-1.1, shift 2px)" if self.augment else "no augmentation")
                + f", label smoothing {self.label_smoothing:g}, dropout 0.5 on the hidden layer"
                + (" and the logits (the book's)" if self.logit_dropout else " only (none on the logits, unlike the book)")
                + (f", weight average (EMA {self.ema:g})" if self.ema else ", no weight averaging"))

    def budget_seconds(self) -> float | None:
        return None if self.budget is None else parse_budget(self.budget)

    def identity(self) -> dict[str, Any]:
        """The fields that must agree for --resume to continue the same run."""
        d = asdict(self)
        for k in ("workers", "checkpoint_every", "channels_last"):
            d.pop(k)
        return d

    def check(self) -> None:
        if self.epochs < 1:
            raise InputError("--epochs must be at least 1")
        if self.batch_size < 1:
            raise InputError("--batch-size must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError("--lr must be a positive number")
        if self.lr_schedule not in MNIST_SCHEDULES:
            raise InputError(f"unknown --lr-schedule {self.lr_schedule!r}: use {', '.join(MNIST_SCHEDULES)}")
        if self.recipe_name not in MNIST_RECIPES:
            raise InputError(f"unknown --recipe {self.recipe_name!r}: use {', '.join(MNIST_RECIPES)}")
        if not (0.0 <= self.warmup < 1.0):
            raise InputError("--warmup must be at least 0 and below 1")
        if not (0.0 <= self.label_smoothing <= 0.5):
            raise InputError("--label-smoothing must be between 0 and 0.5")
        if not (0.0 <= self.ema < 1.0):
            raise InputError("--ema must be at least 0 and below 1")
        self.budget_seconds()
        if self.limit is not None and self.limit < 1:
            raise InputError("--limit must be at least 1")
        if self.ensemble < 1:
            raise InputError("--ensemble must be at least 1")
        if self.workers < 0:
            raise InputError("--workers must be 0 or more")

    def recipe(self) -> str:
        parts = [f"Adam lr {self.lr:g}", f"batch {self.batch_size}",
                 f"budget {self.budget}" if self.budget else f"{self.epochs} epochs",
                 f"lr schedule {self.lr_schedule}" + (f" (warm-up {self.warmup:g})" if self.warmup else ""),
                 "augmentation (rotate 10, scale 0.9-1.1, shift 2px)" if self.augment else "no augmentation"]
        if self.label_smoothing:
            parts.append(f"label smoothing {self.label_smoothing:g}")
        if not self.logit_dropout:
            parts.append("no dropout on the logits")
        if self.ema:
            parts.append(f"EMA {self.ema:g}")
        parts.append(f"seed {self.seed}")
        if self.limit:
            parts.append(f"first {self.limit} training images")
        return ", ".join(parts)


@dataclass
class TransferArgs:
    """Options of a fine-tuning run (what `dl classify train` exposes)."""

    data_dir: Path
    """ImageFolder layout: DATA_DIR/<class>/<image>."""
    base: str = field(default="resnet18.imagenet", metadata=cli(flag="--from"))
    """Weights to start from: any classify entry (torchvision, bundled, imported, package)."""
    epochs: int = field(default=5, metadata=cli(aliases=("-e",), min=1))
    """Passes over the training images."""
    lr: float = 1e-3
    """Peak learning rate of the new head; a fully fine-tuned backbone gets a tenth of it."""
    batch_size: int = field(default=32, metadata=cli(aliases=("-b",), min=1))
    """Images per step (per process under torchrun)."""
    val_split: float = 0.2
    """Share of each class held out for validation; 0 selects on training accuracy."""
    freeze_backbone: bool = field(default=False, metadata=cli(bool_flags="--freeze-backbone/--full"))
    """Train only the new head; the backbone (and its batch-norm statistics) stay as they were."""
    augment: bool = True
    """Random resized crops and horizontal flips on training images."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    workers: int = field(default=0, metadata=cli(min=0))
    """DataLoader worker processes."""
    seed: int = field(default=0, metadata=cli(skip=True))
    """Seed of the validation split (and of training when --seed is not given)."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DetectTrainConfig:
    """Options of a detector training run (what `dl detect train` exposes)."""

    data: str = "scenes"
    """'scenes' (the synthetic world) or a COCO-format annotations JSON file."""
    images: str | None = None
    """Image folder for a COCO JSON (default: the JSON's folder)."""
    epochs: int = field(default=8, metadata=cli(aliases=("-e",), min=1))
    """Passes; for scenes an epoch is --steps-per-epoch batches of fresh scenes (a resumed run may be given more)."""
    steps_per_epoch: int = field(default=100, metadata=cli(min=1))
    """Batches per epoch (scenes only; a COCO set's epoch is one pass over its images)."""
    batch_size: int = field(default=8, metadata=cli(aliases=("-b",), min=1))
    """Images per step (split over the processes under torchrun)."""
    lr: float = 3e-3
    """Peak AdamW learning rate (linear warm-up, then cosine decay to 1/20 of it)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    warmup_steps: int = field(default=100, metadata=cli(min=0))
    """Steps of linear learning-rate warm-up."""
    val_size: int = field(default=100, metadata=cli(min=1))
    """Held-out scenes (validation seed) scored after every epoch; COCO: the last 10% of images."""
    backbone: str = "fcn"
    """fcn (our FCN's encoder, can start from a trained FCN) or conv (plain, from scratch)."""
    width: int = field(default=16, metadata=cli(min=4, max=256))
    """Channels of the backbone's first stage (each stage doubles it)."""
    out_channels: int = field(default=64, metadata=cli(min=8, max=1024))
    """Channels of the feature pyramid."""
    representation: int = field(default=128, metadata=cli(min=8, max=4096))
    """Width of the box head's two fully connected layers."""
    image_size: int = field(default=128, metadata=cli(min=32, max=1024))
    """Side of the generated scenes."""
    seed: int = field(default=0, metadata=cli(skip=True))
    init_from: str | None = None
    """Start the fcn backbone from these segment weights' encoder (e.g. fcn_small.scenes)."""
    freeze_backbone: bool = field(default=False, metadata=cli(bool_flags="--freeze-backbone/--train-backbone"))
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


@dataclass
class SegmentTrainConfig:
    """Options of an FCN training run (what `dl segment train` exposes)."""

    data: str = "scenes"
    """'scenes' (the synthetic world) or a folder with images/ and masks/ (+ classes.txt)."""
    epochs: int = field(default=10, metadata=cli(aliases=("-e",), min=1))
    """Passes; for scenes an epoch is --steps-per-epoch batches of fresh scenes (a resumed run may be given more)."""
    steps_per_epoch: int = field(default=100, metadata=cli(min=1))
    """Batches per epoch (scenes only; a folder's epoch is one pass over its images)."""
    batch_size: int = field(default=8, metadata=cli(aliases=("-b",), min=1))
    """Images per step (split over the processes under torchrun)."""
    lr: float = 4e-3
    """Peak AdamW learning rate (linear warm-up, then cosine decay)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    warmup_steps: int = field(default=100, metadata=cli(min=0))
    """Steps of linear learning-rate warm-up."""
    val_size: int = field(default=100, metadata=cli(min=1))
    """Held-out scenes (validation seed) scored after every epoch; folders: the last 10% of images."""
    width: int = field(default=16, metadata=cli(min=4, max=256))
    """Channels of the FCN's first stage (each stage doubles it)."""
    image_size: int = field(default=128, metadata=cli(min=32, max=1024))
    """Scenes are generated at this size; folder images are resized to it for training."""
    seed: int = field(default=0, metadata=cli(skip=True))
    classes: list[str] = field(default_factory=list)
    """Class names, background first (filled from the data)."""

    def model_config(self) -> dict[str, Any]:
        return {"num_classes": len(self.classes), "width": self.width}


@dataclass
class CaptionTrainConfig:
    """Everything a run depends on; stored in the run folder so --resume continues the same run."""

    data: str = "scenes"
    """`scenes` (the synthetic scene world) or `coco` (set by --captions/--images)."""
    captions_file: str | None = field(default=None, metadata=cli(flag="--captions"))
    """COCO-format caption annotations (captions_train2017.json layout)."""
    images_dir: str | None = field(default=None, metadata=cli(flag="--images"))
    """Folder holding the images the --captions file names."""
    train_size: int = field(default=8000, metadata=cli(min=1, max=1_000_000))
    """Scenes rendered for training (world seed --data-seed)."""
    val_size: int = field(default=300, metadata=cli(min=1, max=100_000))
    """Held-out scenes for per-epoch BLEU (world seed --data-seed + 1)."""
    val_fraction: float = field(default=0.05, metadata=cli(flag="--val-split", renamed=("--val-fraction",), min=0.0,
                                                           max=0.9))
    """COCO: share of the images held out for validation."""
    image_size: int = field(default=80, metadata=cli(min=32, max=1024))
    """Images are squashed to this square size."""
    epochs: int = field(default=10, metadata=cli(aliases=("-e",), min=1))
    """Passes over the training set (a resumed run may be given more)."""
    batch_size: int = field(default=32, metadata=cli(aliases=("-b",), min=2))
    """Images per step (split over the processes under torchrun)."""
    lr: float = 2e-3
    """Peak learning rate (AdamW, warm-up then cosine to 2% of it)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_length: int = field(default=24, metadata=cli(min=1, max=200))
    """Words per caption (training cuts, inference stops)."""
    min_count: int = field(default=1, metadata=cli(min=1))
    """COCO: words seen fewer times become <unk>."""
    backbone: str = "small"
    """Image encoder: small | resnet18 | resnet34 | resnet50."""
    cnn_width: int = field(default=32, metadata=cli(min=1, max=512))
    """Channels of the small encoder's first layer."""
    cnn_grid: int = field(default=4, metadata=cli(min=1, max=16))
    """Side of the small encoder's pooled feature grid."""
    embed_dim: int = field(default=128, metadata=cli(min=8, max=4096))
    """Word (and image) embedding size."""
    hidden_dim: int = field(default=256, metadata=cli(min=8, max=4096))
    """LSTM state size."""
    num_layers: int = field(default=1, metadata=cli(min=1, max=8))
    """LSTM layers."""
    dropout: float = field(default=0.0, metadata=cli(min=0.0, max=0.9))
    """Dropout before the word classifier."""
    freeze_encoder: bool = field(default=False, metadata=cli(bool_flags="--freeze-encoder/--train-encoder"))
    """Train only the projection and the decoder (needs --encoder-weights)."""
    encoder_weights: str | None = None
    """Start the ResNet encoder from a classify entry, e.g. resnet18.imagenet."""
    name: str = "nic.custom"
    """Weights name ARCH.TAG recorded in the weights files (and --name registers it)."""
    seed: int = field(default=0, metadata=cli(skip=True))
    data_seed: int = field(default=0, metadata=cli(min=0))
    """Scene world of the training set (validation uses --data-seed + 1)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def model_config(self, vocab_size: int) -> dict[str, Any]:
        return {"vocab_size": vocab_size, "embed_dim": self.embed_dim, "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers, "backbone": self.backbone, "cnn_width": self.cnn_width,
                "cnn_grid": self.cnn_grid, "dropout": self.dropout}


@dataclass
class DCGANConfig:
    """Options of one DCGAN run (saved in the checkpoint and the weights' metadata)."""

    data: str = field(default="mnist", metadata=cli(skip=True))
    """`mnist`, `fashion-mnist` or a folder of images (the command's DATA argument)."""
    data_dir: str | None = field(default=None, metadata=cli(flag="--data"))
    """Folder with the MNIST/Fashion-MNIST IDX files (default: $DL_DATA, the cache, or a download for mnist; the
    Debian package's folder for fashion-mnist)."""
    epochs: int = field(default=5, metadata=cli(aliases=("-e",), min=1))
    """Epochs in all (a resumed run may be given more)."""
    batch_size: int = field(default=128, metadata=cli(aliases=("-b",), min=2, max=65536))
    """Images per step."""
    lr: float = 2e-4
    """Adam learning rate of G (and of D unless --lr-d)."""
    lr_d: float | None = None
    """D's learning rate when it differs from G's (TTUR, Heusel et al. 2017: e.g. --lr 1e-4 --lr-d 4e-4)."""
    beta1: float = field(default=0.5, metadata=cli(min=0.0, max=0.9999))
    """Adam beta1 (the paper's 0.5; 0 with --loss hinge as in SAGAN)."""
    beta2: float = field(default=0.999, metadata=cli(min=0.0, max=0.9999))
    """Adam beta2."""
    lr_schedule: str = "constant"
    """constant (the paper) | linear (both rates fall to 0 by the last step)."""
    loss: str = "bce"
    """bce (the paper's, with the non-saturating G loss) | hinge (SNGAN/SAGAN)."""
    d_norm: str = "batch"
    """D's normalisation: batch (the paper) | spectral (Miyato et al. 2018)."""
    init_from: str | None = None
    """Start G from these registered generator weights (a name, e.g. dcgan.mnist) instead of random."""
    latent_dim: int = field(default=100, metadata=cli(min=1, max=4096))
    """Size of the latent vector z."""
    width: int = field(default=64, metadata=cli(min=1, max=1024))
    """Channels of G's last hidden layer (and D's first); each deeper layer doubles it."""
    upsample: str = "transposed"
    """G's up-steps: transposed (the paper's 4x4 stride-2 transposed convs) | resize (nearest 2x + 3x3 conv, which
    leaves no checkerboard; Odena et al. 2016)."""
    augment: str = "none"
    """What D sees: none | translate (real and fake alike shifted by up to 1/8 of the side, differentiably;
    DiffAugment, Zhao et al. 2020), so D cannot tell fakes by pixel-grid-aligned texture."""
    class_entropy: float = field(default=0.0, metadata=cli(min=0.0, max=100.0))
    """MNIST sets only: D also learns to name the digit of each real image, and G is pushed, with this weight,
    to make samples that D's class head names with confidence while using every class equally (CatGAN's entropy
    terms, Springenberg 2016). G stays unconditional. 0 = off."""
    image_size: int = 28
    """28 | 32 | 64 (default 28 for the MNIST sets, 64 for folders)."""
    channels: int | None = None
    """1 (grey) | 3 (colour) (default 1 for the MNIST sets, 3 for folders)."""
    label_smoothing: float = field(default=0.1, metadata=cli(min=0.0, max=0.5))
    """Real targets are 1 - this (bce only; one-sided smoothing keeps D from getting over-confident)."""
    ema: float = field(default=0.999, metadata=cli(min=0.0, max=0.99999))
    """Decay of a moving average of G's weights, which is what gets saved and sampled (averaging smooths GAN
    training's oscillation; Yazici et al. 2019). 0 saves G as trained."""
    checkpoint_every: int = field(default=200, metadata=cli(min=1))
    """Steps between checkpoints (and one at each epoch end)."""
    limit: int | None = field(default=None, metadata=cli(min=2))
    """Train on the first N images only (quick trials and tests)."""
    seed: int = field(default=0, metadata=cli(skip=True))
    offline: bool = field(default=False, metadata=cli(skip=True))
    """Never download (MNIST is otherwise fetched through torchvision when no --data is given)."""
    name: str = "dcgan.mnist"
    """Weights name recorded in the output (default dcgan.DATA)."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DQNConfig:
    """Options of a DQN run (defaults: CleanRL dqn_atari.py, i.e. Nature DQN with Adam)."""

    env: str = field(default="Breakout", metadata=cli(aliases=("-e",)))
    """Atari game (Breakout, ALE/Breakout-v5, breakout)."""
    total_steps: int = field(default=10_000_000, metadata=cli(flag="--steps", renamed=("--total-steps",), min=1,
                                                              max=10_000_000_000))
    """Agent steps (each is 4 emulator frames)."""
    learning_rate: float = field(default=1e-4, metadata=cli(flag="--lr", aliases=("--learning-rate",)))
    """Adam learning rate."""
    buffer_size: int = field(default=1_000_000, metadata=cli(min=16, max=20_000_000))
    """Replay capacity in transitions (~7 KB each)."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 1.0
    """Target network update rate (1.0: hard copy)."""
    target_update: int = field(default=1000, metadata=cli(min=1))
    """Steps between target network updates."""
    batch_size: int = field(default=32, metadata=cli(aliases=("-b",), min=1, max=65536))
    """Transitions per gradient step."""
    start_epsilon: float = 1.0
    """Exploration epsilon at the start."""
    end_epsilon: float = 0.01
    """Exploration epsilon after the decay."""
    exploration_fraction: float = 0.10
    """Fraction of total_steps over which epsilon decays linearly."""
    learning_starts: int = field(default=80_000, metadata=cli(min=0))
    """Steps of acting before the first gradient step."""
    train_freq: int = field(default=4, metadata=cli(min=1))
    """Steps between gradient steps."""
    double: bool = False
    """Double DQN targets (van Hasselt et al. 2016) instead of the Nature max target."""
    n_step: int = field(default=1, metadata=cli(min=1, max=20))
    """Multi-step returns (1: the Nature one-step target; 3 as in Rainbow learns faster early)."""
    eval_every: int = field(default=100_000, metadata=cli(min=0))
    """Steps between evaluations with the evaluation protocol (0: never)."""
    eval_episodes: int = field(default=5, metadata=cli(min=1, max=10_000))
    """Full games per periodic evaluation."""
    log_every: int = field(default=10_000, metadata=cli(min=1))
    """Steps between metric rows."""
    checkpoint_every: float = field(default=300.0, metadata=cli(min=1.0))
    """Seconds between checkpoints."""
    checkpoint_buffer: bool = False
    """Also save the replay buffer with each checkpoint (large: ~N x 7 KB)."""
    seed: int = field(default=1, metadata=cli(skip=True))
    """Seed for networks, exploration and environment."""
    name: str = ""
    """Weights name written in the output files (default dqn.<game>)."""

    def validate(self) -> None:
        positive = ("total_steps", "buffer_size", "target_update", "batch_size", "train_freq", "log_every")
        for key in positive:
            if getattr(self, key) <= 0:
                raise InputError(f"--{key.replace('_', '-')} must be positive, got {getattr(self, key)}")
        if not 0 < self.learning_rate < 1:
            raise InputError(f"--lr must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.gamma <= 1:
            raise InputError(f"--gamma must be in [0, 1], got {self.gamma}")
        if not 0 < self.tau <= 1:
            raise InputError(f"--tau must be in (0, 1], got {self.tau}")
        if not 0 <= self.end_epsilon <= self.start_epsilon <= 1:
            raise InputError("epsilons must satisfy 0 <= end <= start <= 1")
        if not 0 < self.exploration_fraction <= 1:
            raise InputError(f"--exploration-fraction must be in (0, 1], got {self.exploration_fraction}")
        if self.learning_starts < 0 or self.eval_every < 0 or self.eval_episodes < 0:
            raise InputError("--learning-starts, --eval-every and --eval-episodes must not be negative")
        if not 1 <= self.n_step <= 20:
            raise InputError(f"--n-step must be in 1..20, got {self.n_step}")
        if self.buffer_size < self.batch_size + 8:
            raise InputError(f"--buffer-size must be larger than the batch ({self.batch_size})")

    def epsilon(self, step: int) -> float:
        span = self.exploration_fraction * self.total_steps
        return max(self.end_epsilon, self.start_epsilon + (self.end_epsilon - self.start_epsilon) * step / span)
