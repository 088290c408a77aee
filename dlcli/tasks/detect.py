"""Object detection: torchvision's COCO Faster R-CNNs (online) and our small Faster R-CNN trained on
the synthetic scene world (bundled, offline), through one pipeline:
preprocess (the entry's preset) -> batched forward (device manager) -> postprocess (threshold,
class filter, top-N; boxes already in original-image pixels, because torchvision's detection models
resize internally and map their boxes back) -> results, annotated images, crops, COCO results JSON.

torch/torchvision are imported inside functions (the registry imports this module for its names).
"""

from __future__ import annotations

import glob
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from dlcli.errors import DLError, InputError, WeightsError
from dlcli.progress import NullReporter, Reporter
from dlcli.weights.presets import Preset, register_preset
from dlcli.tasks._placed import PlacedModel, nan_error
from dlcli.weights import registry
from dlcli.weights.spec import Arch, WeightsSpec

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.results import DetectEvalReport, DetectReport
    from dlcli.device import Runtime

TASK = "detect"
BUNDLED = "fasterrcnn_small.scenes"
"""Our bundled detector: the fallback when the default torchvision weights cannot be fetched."""
FOR_PHOTOS = "for photos use --model fasterrcnn_resnet50_fpn_v2.coco (needs a download)"
"""What the domain notice of the scene detector suggests instead."""

# arch -> (torchvision builder, Weights enum member, box AP on COCO val2017 from torchvision's docs)
TORCHVISION_DETECTORS: dict[str, tuple[str, str, float]] = {
    "fasterrcnn_resnet50_fpn_v2": ("fasterrcnn_resnet50_fpn_v2", "FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1", 46.7),
    "fasterrcnn_resnet50_fpn": ("fasterrcnn_resnet50_fpn", "FasterRCNN_ResNet50_FPN_Weights.COCO_V1", 37.0),
    "fasterrcnn_mobilenet_v3_large_fpn": ("fasterrcnn_mobilenet_v3_large_fpn",
                                          "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1", 32.8),
}
DEFAULT_ARCH = "fasterrcnn_resnet50_fpn_v2"
# torchvision builds these two with frozen batch norm when it loads COCO weights (their files have
# no num_batches_tracked); v2 keeps ordinary batch norm.
_FROZEN_BN = {"fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn"}
TORCHVISION_LICENSE = "BSD-3-Clause (torchvision code); COCO-trained weights, see torchvision's model documentation"


def freeze_batchnorm(module: Any) -> Any:
    """Replace every BatchNorm2d under `module` by torchvision's FrozenBatchNorm2d (same tensors)."""
    import torch.nn as nn
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def _torchvision_builder(arch: str) -> Callable[..., Any]:
    fn_name = TORCHVISION_DETECTORS[arch][0]

    def build(**config: Any) -> Any:
        import torchvision.models.detection as tvd

        # weights=None and weights_backbone=None: building never downloads; the loader fills in
        # verified tensors afterwards.
        model = getattr(tvd, fn_name)(weights=None, weights_backbone=None, **config)
        if arch in _FROZEN_BN:
            freeze_batchnorm(model.backbone)
        return model

    build.__name__ = f"build_{arch}"
    return build


def build_fasterrcnn_small(**config: Any) -> Any:
    from dlcli.models.detector_small import fasterrcnn_small

    if "anchor_sizes" in config:
        config["anchor_sizes"] = tuple(config["anchor_sizes"])
    return fasterrcnn_small(**config)


def _tensor01(spec: WeightsSpec, args: dict[str, Any]) -> Callable[[Any], Any]:
    """PIL RGB -> float tensor (3, H, W) in [0, 1], no resizing (the model handles size/normalising)."""

    def transform(image: Any) -> Any:
        import numpy as np
        import torch

        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)

    return transform


register_preset(Preset("tensor01", _tensor01, "RGB", "RGB scaled to [0, 1], original size (detectors, small FCN)"))

for _arch, (_fn, _enum, _ap) in TORCHVISION_DETECTORS.items():
    registry.register_torchvision(
        _arch, TASK, _torchvision_builder(_arch), _enum, "coco", license=TORCHVISION_LICENSE,
        description=f"{_fn} trained on COCO 2017 (box AP {_ap}; torchvision {_enum})",
        metrics={"box_ap_coco": _ap}, default_config={"num_classes": 91}, default=(_arch == DEFAULT_ARCH),
    )

registry.register_arch(Arch(
    "fasterrcnn_small", TASK, build_fasterrcnn_small,
    description="small Faster R-CNN (stride-8 conv backbone, one feature map) for 128x128 scenes",
    default_config={"num_classes": 5},
))


# --- loading ------------------------------------------------------------------------------------------


# Detectors resize internally (torchvision: short side 800, long side at most 1333), but only after
# normalising the full-size float tensor: a 48-megapixel photo would take ~2 GB before that. Larger
# images are shrunk to this many pixels first and their boxes scaled back (README "Limits").
MAX_WORK_PIXELS = 16_000_000


class Detector(PlacedModel):
    """A loaded detector with its preprocessing and labels, placed by the device manager."""

    def forward(self, tensors: list[Any]) -> list[dict[str, Any]]:
        """Preprocessed images (any sizes) -> per image {boxes, labels, scores} on the CPU, float32."""
        import torch

        images = [self.runtime.to(t) for t in tensors]
        with self.runtime.inference():
            outs = self.model(images)
        outs = [{k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in o.items()} for o in outs]
        for o in outs:
            for key in ("boxes", "scores"):
                if key in o and not bool(torch.isfinite(o[key]).all()):
                    raise nan_error(self.spec.name, self.runtime, key)
        return outs

    def prepare(self, image: Any) -> tuple[Any, float]:
        """(model input, factor from its pixels back to the image's): images over MAX_WORK_PIXELS
        are shrunk first, so memory stays bounded whatever the photo."""
        w, h = image.size
        if w * h <= MAX_WORK_PIXELS:
            return self.transform(image), 1.0
        from PIL import Image

        scale = (MAX_WORK_PIXELS / (w * h)) ** 0.5
        small = image.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BILINEAR)
        return self.transform(small), w / small.size[0]


def load_detector(runtime: Runtime, *, model: str | None = None, weights_file: str | Path | None = None,
                  offline: bool = False, reporter: Reporter | None = None, random_init: bool = False,
                  task: str = TASK, bundled: str = BUNDLED, wrap: Callable[[Any, Any], Any] | None = None) -> Any:
    """Load by name / file / the task's default. When no model was named and the default's file is not
    on this machine and cannot be fetched (offline, or the download fails), fall back to our
    bundled weights and say so (the segment task uses this with its own names)."""
    from dlcli.weights import loader

    reporter = reporter or NullReporter()
    wrap = wrap or Detector
    if model is not None or weights_file is not None or random_init:
        return wrap(loader.load_model(model, task=task, file=weights_file, offline=offline, reporter=reporter,
                                      random_init=random_init), runtime)
    return wrap(loader.load_default(task, bundled, what="bundled, trained on synthetic scenes", offline=offline,
                                    reporter=reporter), runtime)


# --- running -------------------------------------------------------------------------------------------


def parse_classes(value: str | None, labels: Sequence[str] | None) -> set[int] | None:
    """--classes person,dog -> label indices; an unknown name is an InputError listing close ones."""
    if value is None:
        return None
    import difflib

    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise InputError("--classes is empty; give names separated by commas, e.g. person,dog")
    if labels is None:
        raise InputError("these weights have no class names, so --classes cannot be used")
    lookup = {lab.lower(): i for i, lab in enumerate(labels)}
    wanted: set[int] = set()
    for n in names:
        if n.lower() not in lookup:
            close = difflib.get_close_matches(n.lower(), list(lookup), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise InputError(f"--classes: {n!r} is not a class of these weights{hint}")
        wanted.add(lookup[n.lower()])
    return wanted


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def annotate(image: Any, detections: Sequence[Any]) -> Any:
    """The image with each detection's box and `label score` tag (colour per class)."""
    from dlcli import media

    colors = media.palette(max([d.label_id for d in detections], default=0) + 1)
    return media.draw_boxes(image, [d.box for d in detections],
                            [f"{d.label} {d.score:.2f}" for d in detections],
                            [colors[d.label_id] for d in detections])


def to_detections(det: Detector, output: dict[str, Any], factor: float, size: tuple[int, int], *,
                  threshold: float, wanted: set[int] | None, max_detections: int) -> list[Any]:
    """One image's model output -> its Detections: over the threshold, of the wanted classes, boxes
    scaled back by `factor` and clipped to the image (`size` = width, height), highest score first."""
    from dlcli.results import Detection

    w, h = size
    found = []
    for box, lab, score in zip(output["boxes"].tolist(), output["labels"].tolist(), output["scores"].tolist()):
        if score < threshold or (wanted is not None and int(lab) not in wanted):
            continue
        box = [v * factor for v in box]
        box = (min(max(box[0], 0.0), w), min(max(box[1], 0.0), h), min(max(box[2], 0.0), w),
               min(max(box[3], 0.0), h))
        found.append(Detection(label=det.label(int(lab)), label_id=int(lab), score=float(score),
                               box=tuple(round(v, 2) for v in box)))
    found.sort(key=lambda d: -d.score)
    return found[:max_detections]


def detect(
    inputs: Sequence[str],
    runtime: Runtime,
    *,
    model: str | None = None,
    weights_file: str | Path | None = None,
    detector: Detector | None = None,
    threshold: float = 0.5,
    classes: str | None = None,
    max_detections: int = 100,
    batch_size: int = 4,
    out_dir: str | Path | None = None,
    crops_dir: str | Path | None = None,
    force: bool = False,
    strict: bool = False,
    offline: bool = False,
    reporter: Reporter | None = None,
    on_failure: Callable[[Any], None] | None = None,
) -> DetectReport:
    """Detect objects in images (files, folders, globs, URLs, `-`), in input order.

    With `out_dir`, writes `<stem>_det.png` (boxes, labels, scores); with `crops_dir`, one PNG per
    detection (`<stem>_<n>_<label>.png`). Bad inputs are skipped and reported (strict: raised)."""
    from dlcli import media
    from dlcli.domain import DomainGuard
    from dlcli.results import InputFailure, DetectItem, DetectReport, Provenance

    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"--threshold must be between 0 and 1 (got {threshold})")
    if max_detections < 1:
        raise InputError(f"--max-detections must be at least 1 (got {max_detections})")
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1 (got {batch_size})")
    reporter = reporter or NullReporter()
    det = detector or load_detector(runtime, model=model, weights_file=weights_file, offline=offline,
                                    reporter=reporter)
    wanted = parse_classes(classes, det.labels)
    sources = media.expand_inputs(list(inputs), offline=offline)
    # One distinct stem per input (a/dog.jpg and b/dog.png), and every refusal (an existing file, a
    # folder that is a file or read-only) before the first image is read or written.
    stems = media.output_stems(sources)
    out_path = media.check_outputs(Path(out_dir), [f"{st}_det.png" for st in stems], force=force) if out_dir else None
    crops_path = (media.check_outputs(Path(crops_dir), [], force=force,
                                      patterns=[f"{glob.escape(st)}_[0-9]*_*.png" for st in stems])
                  if crops_dir else None)
    results: list[Any] = []
    failures: list[Any] = []
    guard = DomainGuard(det.spec, FOR_PHOTOS, reporter)

    def fail(index: int, source: str, message: str) -> None:
        failure = InputFailure(index=index, source=source, error=message)
        failures.append(failure)
        if on_failure is not None:
            on_failure(failure)

    def loaded() -> Iterator[tuple[int, str, Any]]:
        for index, item in enumerate(media.iter_images(sources, mode=det.mode, offline=offline, strict=strict)):
            if isinstance(item, Exception):
                fail(index, sources[index], item.message)
                continue
            yield index, item.source, item.image

    def run_batch(batch: list[tuple[int, str, Any]]) -> list[tuple[tuple[int, str, Any], Any]]:
        prepared = [det.prepare(img) for _, _, img in batch]
        outs = det.forward([t for t, _ in prepared])
        return [(item, (o, f)) for item, o, (_, f) in zip(batch, outs, prepared)]

    def run_model(batch: list[tuple[int, str, Any]]) -> list[tuple[tuple[int, str, Any], Any]]:
        """The batch's outputs; when the batch fails, each image alone, so that one image the model
        cannot take fails by itself (exit 7) and the others still get their boxes."""
        try:
            return run_batch(batch)
        except DLError:
            raise
        except Exception:
            pass
        done = []
        for item in batch:
            try:
                done += run_batch([item])
            except DLError:
                raise
            except Exception as exc:
                lines = str(exc).strip().splitlines()
                message = f"{item[1]}: detection failed ({lines[0] if lines else type(exc).__name__})"
                if strict:
                    raise InputError(message) from None
                fail(item[0], item[1], message)
        return done

    def finish(batch: list[tuple[int, str, Any]]) -> None:
        for (index, source, img), (o, factor) in run_model(batch):
            found = to_detections(det, o, factor, img.size, threshold=threshold, wanted=wanted,
                                  max_detections=max_detections)
            files: dict[str, Any] = {}
            if out_path is not None:
                files["annotated"] = str(media.save_image(
                    annotate(img, found), out_path / f"{stems[index]}_det.png", force=force))
            if crops_path is not None:
                crops = []
                for n, d in enumerate(found):
                    x0, y0, x1, y1 = (int(round(v)) for v in d.box)
                    if x1 <= x0 or y1 <= y0:
                        continue
                    name = f"{stems[index]}_{n}_{_safe(d.label)}.png"
                    crops.append(str(media.save_image(img.crop((x0, y0, x1, y1)), crops_path / name, force=force)))
                files["crops"] = crops
            results.append(DetectItem(index=index, source=source, width=img.size[0], height=img.size[1],
                                      detections=tuple(found), files=files, warning=guard.warning(img)))
        reporter.advance(len(batch))

    reporter.start(f"detecting with {det.spec.name}", float(len(sources)))
    t0 = time.perf_counter()
    try:
        batch: list[tuple[int, str, Any]] = []
        for item in loaded():
            batch.append(item)
            if len(batch) >= batch_size:
                finish(batch)
                batch = []
        if batch:
            finish(batch)
    finally:
        reporter.finish()
    seconds = time.perf_counter() - t0
    return DetectReport(
        model=det.spec.name, threshold=threshold, classes=tuple(det.label(i) for i in sorted(wanted)) if wanted else None,
        images=tuple(results), failures=tuple(failures), seconds=seconds,
        provenance=Provenance.collect(runtime, det.spec.name, det.loaded.sha256),
    )


def coco_results(report: Any) -> list[dict[str, Any]]:
    """Detections in the COCO results format (image_id = input position; bbox = x, y, width, height)."""
    rows = []
    for item in report.images:
        for d in item.detections:
            x0, y0, x1, y1 = d.box
            rows.append({"image_id": item.index, "file_name": item.source, "category_id": d.label_id,
                         "category": d.label, "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                         "score": round(d.score, 5)})
    return rows


def write_coco_json(report: Any, path: str | Path, *, force: bool = False) -> Path:
    from dlcli.atomic import atomic_output

    path = Path(path).expanduser()
    with atomic_output(path, force) as tmp:
        tmp.write_text(json.dumps(coco_results(report), indent=1) + "\n", encoding="utf-8")
    return path


# --- evaluation ------------------------------------------------------------------------------------------


def evaluate(
    runtime: Runtime,
    *,
    model: str | None = None,
    weights_file: str | Path | None = None,
    data: str = "scenes",
    images: str | None = None,
    count: int = 500,
    seed: int | None = None,
    batch_size: int = 8,
    offline: bool = False,
    reporter: Reporter | None = None,
    pictures_dir: Path | None = None,
) -> DetectEvalReport:
    """COCO's box AP/AR (mAP@0.5, mAP@0.5:0.95, by object size, AR at 1/10/100 detections) of a detector
    on held-out scenes (test seed) or a COCO-format set (crowd regions ignored, as COCOeval does)."""
    from dlcli.results import DetectEvalReport, Provenance
    from dlcli.data.coco import CocoDetection
    from dlcli.evaluation.detection import evaluate_detector

    reporter = reporter or NullReporter()
    if count < 1:
        raise InputError(f"--count must be at least 1 (got {count})")
    if model is None and weights_file is None:
        model = BUNDLED if data == "scenes" else None
    det = load_detector(runtime, model=model, weights_file=weights_file, offline=offline, reporter=reporter)
    if data == "scenes":
        from dlcli.data import scenes

        scene_seed = scenes.TEST_SEED if seed is None else seed
        if det.labels is not None and list(det.labels) != list(scenes.CLASS_NAMES):
            raise WeightsError(f"{det.spec.name} was not trained on scenes (its classes are not {', '.join(scenes.CLASS_NAMES)}); "
                               "evaluate it on its own data with --data FILE.json")

        def samples() -> Iterator[Any]:
            for i in range(count):
                s = scenes.make_scene(scene_seed, i)
                yield (det.transform(_pil(s.image)), {"boxes": _tensor(s.boxes), "labels": _tensor(s.labels)})

        described, n = f"scenes seed {scene_seed}, {count} images", count
    else:
        coco = CocoDetection(Path(data), Path(images) if images else None)
        if det.labels is not None and not set(coco.classes[1:]) <= set(det.labels):
            missing = sorted(set(coco.classes[1:]) - set(det.labels))
            raise WeightsError(f"{det.spec.name} has no class {', '.join(missing[:5])} of {data}")
        index = {name: i for i, name in enumerate(det.labels or [])}

        def samples() -> Iterator[Any]:
            for i in range(len(coco)):
                x, t = coco[i]
                # Map the file's contiguous labels to the model's label indices by name.
                if det.labels is not None:
                    t["labels"] = _tensor([index[coco.classes[int(v)]] for v in t["labels"].tolist()]).long()
                yield x, t

        described, n = f"{data}, {len(coco)} images", len(coco)
    t0 = time.perf_counter()
    scores = evaluate_detector(det.model, samples(), runtime, batch_size=batch_size, reporter=reporter, total=n)
    per_class = {det.label(c): {"ap50": scores.per_class_ap50[c], "ap50_95": scores.per_class_ap50_95[c]}
                 for c in scores.per_class_ap50}
    written: list[Path] = []
    if pictures_dir is not None:  # per-class precision-recall and the confusion matrix with background
        from dlcli.evaluation import pictures

        written = pictures.detection(scores, det.label, pictures_dir)
    return DetectEvalReport(model=det.spec.name, data=described, images=scores.images,
                            ground_truth=scores.ground_truth, map50=scores.map50, map50_95=scores.map50_95,
                            per_class=per_class, seconds=time.perf_counter() - t0,
                            provenance=Provenance.collect(runtime, det.spec.name, det.loaded.sha256), coco=scores.coco,
                            pictures=tuple(str(p) for p in written))


def _pil(array: Any) -> Any:
    from PIL import Image

    return Image.fromarray(array)


def _tensor(values: Any) -> Any:
    import torch

    return torch.as_tensor(values)


def register_trained(name: str | None, best: Path, *, task: str, force: bool = False) -> str | None:
    """Store a run's best weights under `name` (ARCH.TAG) so `--model NAME` finds them."""
    if name is None:
        return None
    from dlcli.weights import loader
    from dlcli.weights.spec import split_name

    try:
        arch, _ = split_name(name)
    except ValueError:
        raise InputError(f"--name {name!r} must be ARCH.TAG (e.g. fasterrcnn_small.mine)") from None
    if registry.get_arch(arch).task != task:
        raise InputError(f"--name {name!r}: {arch!r} is a {registry.get_arch(arch).task!r} architecture, not {task!r}")
    return loader.import_weights(name, best, force=force).name
