"""Results: frozen dataclasses, one per task, each with `to_dict()` for JSON.

Every result a command renders carries a `Provenance` (versions, device, dtype, seed, weights)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any


def _plain(value: Any) -> Any:
    """Turn a result field into something json.dumps accepts (no numpy/torch types, no NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _plain(value.item())
    if hasattr(value, "tolist") and callable(value.tolist):
        return _plain(value.tolist())
    return value


class ResultMixin:
    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def json_value(self) -> Any:
        """What --json prints (a report's fields; a tool's record, see _RecordResult)."""
        return self.to_dict()


@dataclasses.dataclass(frozen=True)
class Provenance(ResultMixin):
    dlcli_version: str
    torch_version: str
    torchvision_version: str | None
    device: str
    dtype: str
    seed: int | None
    weights: str | None = None
    weights_sha256: str | None = None
    # What ran the forward passes: "torch", or e.g. "onnxruntime 1.20.1 (int8)" for an exported file.
    engine: str = "torch"

    @classmethod
    def collect(cls, runtime: Any = None, weights: str | None = None, sha256: str | None = None,
                engine: str | None = None) -> "Provenance":
        from dlcli import __version__

        desc = runtime.describe() if runtime is not None else {"device": "cpu", "dtype": "float32", "seed": None}
        return cls(__version__, package_version("torch") or "", package_version("torchvision"), desc["device"],
                   desc["dtype"], desc["seed"], weights, sha256, engine or "torch")


def package_version(name: str) -> str | None:
    """`name.__version__` (e.g. "2.14.1+cu130"), without importing the package when it is not loaded:
    a run through onnxruntime never imports torch, and importing it only to name its version
    would take most of that run's time. torch and torchvision keep the string in version.py."""
    import sys

    module = sys.modules.get(name)
    if module is not None and hasattr(module, "__version__"):
        return str(module.__version__)
    import importlib.util
    import re

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        try:
            text = (Path(folder) / "version.py").read_text(encoding="utf-8")
        except OSError:
            continue
        m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        if m:
            return m.group(1)
    try:  # a build without version.py: the installed distribution's version
        from importlib.metadata import version

        return version(name)
    except Exception:  # PackageNotFoundError, or broken metadata
        return None


# --- foundation: dl doctor, dl weights --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DeviceCheck(ResultMixin):
    device: str
    name: str
    matmul_ok: bool
    matmul_ms: float | None
    fp16: bool
    bf16: bool
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class WeightsStatus(ResultMixin):
    name: str
    task: str
    source: str
    state: str  # missing | cached | bundled | imported | package, plus ", verified" | "error: …"
    path: str | None


@dataclasses.dataclass(frozen=True)
class DoctorReport(ResultMixin):
    versions: dict[str, str | None]
    platform: str
    cpu_threads: int
    devices: list[DeviceCheck]
    cache_dir: str
    cache_writable: bool
    torch_home: str
    bundled_dir: str
    offline: bool
    weights: list[WeightsStatus]
    atari: dict[str, Any]
    # Records of the manifest or the user's import index refused as corrupt, and index files that
    # cannot be read: doctor reports them instead of failing on them.
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.cache_writable and all(d.matmul_ok for d in self.devices) and not any(
            w.state.startswith("error") for w in self.weights
        ) and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**_plain(self), "healthy": self.healthy}  # the verdict travels with the JSON


# --- classify, summary, profile, transfer learning (issue 4) -----------------------------------


@dataclasses.dataclass(frozen=True)
class Prediction(ResultMixin):
    rank: int
    label: str
    index: int
    probability: float


@dataclasses.dataclass(frozen=True)
class ClassifyResult(ResultMixin):
    index: int  # position among the expanded inputs
    source: str
    predictions: tuple[Prediction, ...]
    warning: str | None = None  # the weights' domain notice when this input does not look like their world


@dataclasses.dataclass(frozen=True)
class InputFailure(ResultMixin):
    """One input that could not be processed (unreadable, too large, not an image…), kept in the
    report of every per-input task (classify, detect, segment, caption) beside the successes."""

    index: int
    source: str
    error: str


@dataclasses.dataclass(frozen=True)
class ClassifyReport(ResultMixin):
    model: str
    top_k: int
    batch_size: int
    images: tuple[ClassifyResult, ...]
    failures: tuple[InputFailure, ...]
    seconds: float
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class LayerSummary(ResultMixin):
    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    receptive_field: int | None  # in input pixels; None where it is not defined (after flattening)
    jump: int | None  # input pixels between neighbouring outputs (the product of strides so far)


@dataclasses.dataclass(frozen=True)
class StackDemo(ResultMixin):
    """n stacked 3x3 convs against one k x k conv with the same receptive field (the book's 8.1.3)."""

    convs: int
    receptive_field: int
    weights_stacked: int  # per (input channel, output channel) pair
    weights_single: int


@dataclasses.dataclass(frozen=True)
class ModelSummary(ResultMixin):
    model: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerSummary, ...]
    total_params: int
    trainable_params: int
    total_macs: int
    stacked_3x3: tuple[StackDemo, ...]


@dataclasses.dataclass(frozen=True)
class ProfileShare(ResultMixin):
    category: str
    ms: float
    share: float
    calls: int


@dataclasses.dataclass(frozen=True)
class ProfileReport(ResultMixin):
    model: str
    input_shape: tuple[int, ...]
    warmup: int
    repeats: int
    forward_ms: float  # a forward pass without hooks, median of the repeats
    hooked_ms: float  # the sum over layers with hooks and synchronisation (mean per pass)
    categories: tuple[ProfileShare, ...]
    layer_types: tuple[ProfileShare, ...]
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class TransferReport(ResultMixin):
    base: str
    classes: tuple[str, ...]
    train_images: int
    val_images: int
    epochs: int
    best_epoch: int
    best_val_accuracy: float
    history: tuple[dict[str, Any], ...]
    weights_file: str
    weights_sha256: str
    out: str
    seconds: float
    provenance: Provenance


# --- caption (issue 6) -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CaptionCandidate(ResultMixin):
    caption: str
    log_prob: float  # sum over the words and <end> (natural log)
    length: int  # words
    finished: bool  # False when cut at --max-length


@dataclasses.dataclass(frozen=True)
class CaptionItem(ResultMixin):
    index: int  # position among the expanded inputs
    source: str
    caption: str
    log_prob: float
    candidates: tuple[CaptionCandidate, ...]  # every beam candidate, best first
    warning: str | None = None  # the weights' domain notice when this input does not look like their world


@dataclasses.dataclass(frozen=True)
class CaptionReport(ResultMixin):
    model: str
    beam_size: int
    max_length: int
    images: tuple[CaptionItem, ...]
    failures: tuple[InputFailure, ...]
    seconds: float
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class CaptionTrainReport(ResultMixin):
    """`dl caption train`: the run folder, the best weights and their validation BLEU, per epoch."""

    out: str
    weights: str
    best_epoch: int
    metrics: dict[str, float]
    history: list[Any]  # one record per epoch (epoch, loss, bleu1, bleu4, lr, seconds)
    config: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class CaptionEvalReport(ResultMixin):
    model: str
    data: str  # "scenes seed S, N images" or the captions file
    images: int
    beam_size: int
    max_length: int
    bleu: dict[str, float]  # bleu1..bleu4, corpus level
    examples: tuple[dict[str, Any], ...]
    seconds: float
    provenance: Provenance
    pictures: tuple[str, ...] = ()  # files written with --out DIR (captions.png)


# --- stylize, generate (issue 7) ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StylizeResult(ResultMixin):
    content: str
    styles: list[str]
    style_blend: list[float]
    output: Path
    snapshots: list[Path]
    width: int
    height: int
    steps: int
    evaluations: int  # forward/backward passes (L-BFGS may take more than one per step)
    optimizer: str
    init: str
    weights: dict[str, float]  # content / style / tv loss weights
    content_layers: list[str]
    style_layers: list[str]
    preserve_color: bool
    initial_losses: dict[str, float]  # weighted terms: content, style, tv, total
    final_losses: dict[str, float]
    seconds: dict[str, float]  # load, optimize, per_step
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class GenerateResult(ResultMixin):
    model: str
    seed: int
    n: int
    files: list[Path]  # grid PNG, or (with --interpolate) the GIF and the strip PNG
    kind: str  # "grid" or "interpolation"
    image_size: int
    interpolate: int | None
    seconds: float
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class GenerateTrainResult(ResultMixin):
    data: str
    out_dir: Path
    weights_file: Path
    sha256: str
    epochs: int
    steps: int
    history: list[dict[str, Any]]
    samples: list[Path]
    seconds: float
    resumed_from_step: int | None
    provenance: Provenance


# --- detect, segment (issue 5) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Detection(ResultMixin):
    label: str
    label_id: int  # index into the weights' labels (COCO category id for torchvision's COCO weights)
    score: float
    box: tuple[float, float, float, float]  # xyxy, pixels of the original image


@dataclasses.dataclass(frozen=True)
class DetectItem(ResultMixin):
    index: int  # position among the expanded inputs
    source: str
    width: int
    height: int
    detections: tuple[Detection, ...]  # by score, highest first
    files: dict[str, Any]  # annotated image / crops written on request
    warning: str | None = None  # the weights' domain notice when this input does not look like their world


@dataclasses.dataclass(frozen=True)
class DetectReport(ResultMixin):
    model: str
    threshold: float
    classes: tuple[str, ...] | None  # the --classes filter, if any
    images: tuple[DetectItem, ...]
    failures: tuple[InputFailure, ...]
    seconds: float
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class DetectEvalReport(ResultMixin):
    model: str
    data: str
    images: int
    ground_truth: int
    map50: float
    map50_95: float
    per_class: dict[str, dict[str, float]]  # label -> {ap50, ap50_95}
    seconds: float
    provenance: Provenance
    coco: dict[str, float] = dataclasses.field(default_factory=dict)  # COCOeval's 12 stats by name (None: no ground truth in range)
    pictures: tuple[str, ...] = ()  # files written with --out DIR (pr.png, confusion.png)


@dataclasses.dataclass(frozen=True)
class SegmentClass(ResultMixin):
    label: str
    label_id: int
    pixels: int
    share: float  # of the image's pixels


@dataclasses.dataclass(frozen=True)
class SegmentItem(ResultMixin):
    index: int
    source: str
    width: int
    height: int
    classes: tuple[SegmentClass, ...]  # present classes, largest share first
    files: dict[str, Any]  # mask / color / overlay written on request
    warning: str | None = None  # the weights' domain notice when this input does not look like their world


@dataclasses.dataclass(frozen=True)
class SegmentReport(ResultMixin):
    model: str
    images: tuple[SegmentItem, ...]
    failures: tuple[InputFailure, ...]
    seconds: float
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class SegmentEvalReport(ResultMixin):
    model: str
    data: str
    images: int
    miou: float
    pixel_accuracy: float
    per_class_iou: dict[str, float | None]  # None: class absent from truth and prediction
    seconds: float
    provenance: Provenance
    pictures: tuple[str, ...] = ()  # files written with --out DIR (iou.png, confusion.png)


@dataclasses.dataclass(frozen=True)
class VisionTrainReport(ResultMixin):
    """`dl detect train` / `dl segment train`."""

    task: str
    out: Path
    best: Path
    registered: str | None  # the --name the best weights were stored under
    epochs: int
    metrics: dict[str, float]
    seconds: float
    provenance: Provenance


# --- play-dqn ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DQNEpisode(ResultMixin):
    episode: int
    score: float  # raw game score of one full game
    steps: int  # agent steps (4 frames each)
    seconds: float


@dataclasses.dataclass(frozen=True)
class DQNScores(ResultMixin):
    policy: str  # the weights name, or "random"
    episodes: tuple[DQNEpisode, ...]
    mean: float
    std: float
    min: float
    max: float


@dataclasses.dataclass(frozen=True)
class DQNPlayResult(ResultMixin):
    """`dl play-dqn`: per-game scores of the agent (and of a random policy with --vs-random)."""

    env: str
    game: str
    protocol: str
    epsilon: float
    seed: int
    agent: DQNScores
    random: DQNScores | None
    ratio_vs_random: float | None  # agent mean / random mean (None without --vs-random or if random <= 0)
    recording: str | None
    seconds: float
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class DQNTrainReport(ResultMixin):
    """`dl play-dqn train`."""

    env: str
    out: Path
    steps: int
    episodes: int
    mean_return_100: float | None  # raw game score, last 100 training games
    best_eval: float | None
    final_weights: Path
    best_weights: Path | None
    evaluations: tuple[dict[str, Any], ...]
    seconds: float
    steps_per_second: float
    provenance: Provenance


# --- train-mnist (issue 3) ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MnistEpoch(ResultMixin):
    """One epoch of one net of `dl train-mnist` (the trainer's own record of it, too)."""

    epoch: int
    loss: float
    train_acc: float
    test_acc: float
    test_errors: int
    seconds: float
    images_per_s: float
    lr: float
    elapsed: float = 0.0  # seconds since the net started (training and evaluation), for time-to-accuracy
    member: int = 1  # which net of an --ensemble


@dataclasses.dataclass(frozen=True)
class MnistTrainReport(ResultMixin):
    """`dl train-mnist`: per-epoch history, final test accuracy (of the ensemble when N > 1)."""

    out: Path | None
    recipe: str
    epochs: tuple[MnistEpoch, ...]
    members: tuple[dict[str, Any], ...]  # seed, test_acc, test_errors, best_acc, best_epoch, weights
    accuracy: float
    errors: int
    n: int
    ensemble: int
    confusion: tuple[tuple[int, ...], ...]
    confused_pairs: tuple[dict[str, Any], ...]
    misclassified: Path | None
    weights: Path | None
    world_size: int
    seconds: float
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class MnistEvalReport(ResultMixin):
    """`dl train-mnist --evaluate`."""

    accuracy: float
    errors: int
    n: int
    confusion: tuple[tuple[int, ...], ...]
    confused_pairs: tuple[dict[str, Any], ...]
    seconds: float
    images_per_s: float
    misclassified: Path | None
    provenance: Provenance


# --- export and bench --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExportCheck(ResultMixin):
    """An exported graph run beside the torch model on the same inputs."""

    what: str  # "onnx fp32", "onnx int8", "torchscript"
    inputs: int  # samples compared
    max_abs_diff: float  # largest |export - torch| over every output element (inf: shapes differ)
    top1_agreement: float | None  # share of samples (pixels for segmenters) with the same argmax; None for images
    tolerance: float | None  # the bound max_abs_diff had to meet; None: reported only
    passed: bool
    note: str = ""


@dataclasses.dataclass(frozen=True)
class ExportReport(ResultMixin):
    """`dl export`."""

    model: str
    task: str
    format: str  # onnx | torchscript
    precision: str  # fp32 | int8
    file: Path
    bytes: int
    sha256: str
    sidecar: Path | None  # the JSON beside a TorchScript file
    source_sha256: str | None
    checks: tuple[ExportCheck, ...]
    calibration_images: int | None
    quantization: dict[str, Any] | None
    seconds: float
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class BenchRow(ResultMixin):
    runtime: str  # torch-fp32 | torch-bf16 | onnx-fp32 | onnx-int8
    batch_size: int
    latency_ms: float  # median time of one forward pass of the batch
    images_per_s: float
    ratio: float | None  # images/s over torch-fp32's at the same batch size (None without a torch-fp32 row)


@dataclasses.dataclass(frozen=True)
class BenchAccuracy(ResultMixin):
    runtime: str
    metric: str  # "errors", "mIoU", "top-1 agreement", "max abs diff"
    value: float | None
    delta: float | None  # value minus torch-fp32's (None for torch-fp32 itself or without one)
    n: int  # held-out samples it was measured on


@dataclasses.dataclass(frozen=True)
class BenchReport(ResultMixin):
    """`dl bench`: the speed of each runtime at each batch size, measured in one run, and its accuracy."""

    model: str
    threads: int
    rounds: int
    rows: tuple[BenchRow, ...]
    accuracy: tuple[BenchAccuracy, ...]
    data: str | None  # what accuracy was measured on
    cpu: str
    seconds: float
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class VideoReport(ResultMixin):
    """One video (or animated GIF, or folder of frames) run through a per-image task, frame by frame.

    Per-frame results go to the JSONL file as they come (memory stays flat); the report keeps the
    totals. `summary` holds the task's tallies (e.g. detections per label, frames with a class)."""

    task: str  # detect | segment | classify | caption
    model: str
    source: str
    width: int
    height: int
    fps: float  # of the source, and of the output video
    frames: int  # frames processed (after --start, --vid-stride, --max-frames)
    vid_stride: int
    start: float
    output: str | None  # the annotated video
    output_fps: float | None  # the output's frame rate: the source's divided by --vid-stride
    jsonl: str | None  # the per-frame records ("-" for stdout)
    summary: dict[str, Any]
    seconds: float
    frames_per_second: float  # processing speed: decode + model + drawing + encode
    warning: str | None  # a truncated source; the weights' domain notice
    provenance: Provenance


# --- the tools' results (`dl weights`, `dl runs`): records whose JSON is the record itself -------------


class _RecordResult(ResultMixin):
    """A tool's answer whose --json is one record or a list (`json_value`), not the dataclass's fields."""

    def json_value(self) -> Any:
        return _plain(self.record)  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class Line(_RecordResult):
    """An answer that is one line for people and a record for --json: a path to use in a script
    (stdout), or a remark that --quiet hides (`remark`, stderr)."""

    text: str
    record: dict[str, Any]
    remark: bool = False


@dataclasses.dataclass(frozen=True)
class Record(_RecordResult):
    """A titled record shown as a two-column table (`dl weights info`, `dl weights import`)."""

    title: str
    record: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class WeightsList(_RecordResult):
    """`dl weights list`: each entry's summary with where it is (`state`) and whether it is its task's default."""

    record: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class VerifyReport(_RecordResult):
    """`dl weights verify`: per file, whether its SHA-256 matched (`detail`: the digest or the problem)."""

    record: list[dict[str, Any]]

    @property
    def failed(self) -> int:
        return sum(not r["ok"] for r in self.record)


@dataclasses.dataclass(frozen=True)
class RunsList(_RecordResult):
    """`dl runs list`: one record per run folder found below `folder`."""

    folder: str
    record: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class RunShow(_RecordResult):
    """`dl runs show`: a run's state, config, per-epoch rows and files."""

    record: dict[str, Any]
