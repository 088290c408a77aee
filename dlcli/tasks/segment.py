"""Semantic segmentation: torchvision's COCO-with-VOC-labels models (FCN, DeepLabV3, LR-ASPP; online)
and our small FCN trained on the synthetic scene world (bundled, offline).

preprocess (the entry's preset) -> forward one image at a time (sizes differ) -> class scores
upsampled bilinearly to the ORIGINAL image size -> argmax -> per-class pixel shares, and on request a
class-index mask PNG (same size as the input), a colour mask and an overlay.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from dlcli.errors import DLError, InputError, WeightsError
from dlcli.progress import NullReporter, Reporter
from dlcli.tasks._placed import PlacedModel, nan_error
from dlcli.weights import registry
from dlcli.weights.spec import Arch

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.results import SegmentEvalReport, SegmentReport
    from dlcli.device import Runtime

TASK = "segment"
BUNDLED = "fcn_small.scenes"
FOR_PHOTOS = "for photos use --model deeplabv3_resnet50.coco_voc (needs a download)"
"""What the domain notice of the scene FCN suggests instead."""

# arch -> (Weights enum member, builder kwargs the COCO/VOC file needs, mIoU on COCO-val2017-VOC-labels)
TORCHVISION_SEGMENTERS: dict[str, tuple[str, dict[str, Any], float]] = {
    "fcn_resnet50": ("FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1", {"num_classes": 21, "aux_loss": True}, 60.5),
    "deeplabv3_resnet50": ("DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1",
                           {"num_classes": 21, "aux_loss": True}, 66.4),
    "lraspp_mobilenet_v3_large": ("LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
                                  {"num_classes": 21}, 57.9),
}
DEFAULT_ARCH = "fcn_resnet50"
TORCHVISION_LICENSE = ("BSD-3-Clause (torchvision code); trained on a COCO subset with the 20 VOC categories, "
                       "see torchvision's model documentation")


def _torchvision_builder(arch: str) -> Callable[..., Any]:
    def build(**config: Any) -> Any:
        import torchvision.models.segmentation as tvs

        # weights=None, weights_backbone=None: never downloads; the loader fills in verified tensors.
        return getattr(tvs, arch)(weights=None, weights_backbone=None, **config)

    build.__name__ = f"build_{arch}"
    return build


def _drop_aux(model: Any, config: dict[str, Any]) -> Any:
    """The auxiliary head only helps training (its tensors are in the file, so it is built, loaded, dropped)."""
    if getattr(model, "aux_classifier", None) is not None:
        model.aux_classifier = None
    return model


def build_fcn_small(**config: Any) -> Any:
    from dlcli.models.fcn_small import FCNSmall

    return FCNSmall(**config)


for _arch, (_enum, _config, _miou) in TORCHVISION_SEGMENTERS.items():
    registry.register_torchvision(
        _arch, TASK, _torchvision_builder(_arch), _enum, "coco_voc", license=TORCHVISION_LICENSE,
        description=f"{_arch} on COCO with the 20 VOC classes (mIoU {_miou}; torchvision {_enum})",
        metrics={"miou_coco_voc": _miou}, default_config=_config, finalize=_drop_aux, default=(_arch == DEFAULT_ARCH),
    )

registry.register_arch(Arch(
    "fcn_small", TASK, build_fcn_small,
    description="small FCN (4 stages, FCN-4s skips, bilinear-initialised transposed convolutions)",
    default_config={"num_classes": 5},
))


# The model sees at most this many pixels (larger inputs are shrunk for the forward pass; the mask
# is still made at the input's own size, from logits upsampled a band of rows at a time), so a
# large photo costs memory in proportion to its pixels, not to pixels x classes (README "Limits").
MAX_WORK_PIXELS = 1_000_000
_BAND_VALUES = 8_000_000  # logits upsampled per band: classes x rows x width, float32


def upsample_argmax(logits: Any, height: int, width: int) -> Any:
    """argmax over classes of `logits` (1, C, h, w) bilinearly upsampled to (height, width)
    (align_corners=False, as F.interpolate), computed a band of output rows at a time: the
    full-size float logits (C x H x W x 4 bytes, 5 GB for 21 classes at 8000x8000) never exist.
    Returns a uint8 (or int32 beyond 256 classes) (height, width) CPU tensor."""
    import torch
    import torch.nn.functional as F

    c, h, w = (int(v) for v in logits.shape[1:])
    dtype = torch.uint8 if c <= 256 else torch.int32
    out = torch.empty((height, width), dtype=dtype)
    if (h, w) == (height, width):
        return logits[0].argmax(0).to(dtype).cpu()
    rows = max(1, _BAND_VALUES // max(1, c * width))
    scale = h / height
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        # Source rows of each output row, as PyTorch's bilinear kernel computes them.
        src = ((torch.arange(y0, y1, dtype=torch.float64) + 0.5) * scale - 0.5).clamp_min(0.0)
        lo = src.floor().long().clamp(max=h - 1)
        hi = (lo + 1).clamp(max=h - 1)
        frac = (src - lo.double()).float().to(logits.device).view(1, 1, -1, 1)
        band = logits[:, :, lo.to(logits.device)] * (1 - frac) + logits[:, :, hi.to(logits.device)] * frac
        # The rows are in place; interpolate along the width only (height unchanged is exact).
        band = F.interpolate(band, size=(y1 - y0, width), mode="bilinear", align_corners=False)
        out[y0:y1] = band[0].argmax(0).to(dtype).cpu()
    return out


class Segmenter(PlacedModel):
    """A loaded segmentation model with its preprocessing and labels, placed by the device manager."""

    @property
    def num_classes(self) -> int | None:
        return len(self.labels) if self.labels is not None else None

    def predict(self, image: Any) -> Any:
        """PIL image -> class-index mask (H, W) at the image's own size (uint8 CPU tensor; int32
        beyond 256 classes)."""
        import torch
        import torch.nn.functional as F

        from dlcli.evaluation.segmentation import logits_of

        x = self.transform(image).unsqueeze(0)
        th, tw = (int(v) for v in x.shape[-2:])
        if th * tw > MAX_WORK_PIXELS:
            scale = (MAX_WORK_PIXELS / (th * tw)) ** 0.5
            x = F.interpolate(x, size=(max(1, int(th * scale)), max(1, int(tw * scale))), mode="bilinear",
                              align_corners=False, antialias=True)
        x = self.runtime.to(x)
        with self.runtime.inference():
            logits = logits_of(self.model(x)).float()
        if not bool(torch.isfinite(logits).all()):
            raise nan_error(self.spec.name, self.runtime)
        w, h = image.size
        return upsample_argmax(logits, h, w)


def load_segmenter(runtime: Runtime, *, model: str | None = None, weights_file: str | Path | None = None,
                   offline: bool = False, reporter: Reporter | None = None, random_init: bool = False,
                   model_file: str | Path | None = None, engine: str | None = None) -> Segmenter:
    """By name, weights file or the default (torch, or onnxruntime with engine="onnx"), or an
    exported ONNX file (`model_file`)."""
    from dlcli.tasks import export
    from dlcli.tasks.detect import load_detector

    if model_file is not None:
        return Segmenter(export.load_weights(TASK, model=model, weights_file=weights_file, model_file=model_file,
                                             engine=engine), runtime)
    return load_detector(runtime, model=model, weights_file=weights_file, offline=offline, reporter=reporter,
                         random_init=random_init, task=TASK, bundled=BUNDLED,
                         wrap=lambda lw, rt: Segmenter(export.for_engine(lw, engine, reporter=reporter), rt))


def class_colors(n: int) -> list[tuple[int, int, int]]:
    """Background black, then distinct saturated colours."""
    from dlcli import media

    return [(0, 0, 0)] + media.palette(max(n - 1, 1))


def color_mask(mask: Any, n: int) -> Any:
    import numpy as np
    from PIL import Image

    lut = np.array(class_colors(max(n, int(mask.max()) + 1)), dtype=np.uint8)
    return Image.fromarray(lut[np.asarray(mask)])


def overlay(image: Any, mask: Any, n: int, opacity: float) -> Any:
    """The image with non-background pixels tinted by their class colour at `opacity` (8-bit PIL
    operations: a few bytes per pixel, where float arrays took 40)."""
    import numpy as np
    from PIL import Image

    base = image.convert("RGB")
    tinted = Image.blend(base, color_mask(mask, n), opacity)
    fg = Image.fromarray(((np.asarray(mask) > 0).astype(np.uint8) * 255), mode="L")
    return Image.composite(tinted, base, fg)


def mask_classes(seg: Segmenter, mask: Any) -> tuple[Any, ...]:
    """The classes present in a class-index mask (NumPy), largest pixel share first."""
    import numpy as np

    from dlcli.results import SegmentClass

    counts = np.bincount(mask.reshape(-1), minlength=1)
    total = int(mask.size)
    present = sorted(((int(c), int(k)) for k, c in enumerate(counts) if c > 0), reverse=True)
    return tuple(SegmentClass(label=seg.label(k), label_id=k, pixels=c, share=c / total) for c, k in present)


def segment(
    inputs: Sequence[str],
    runtime: Runtime,
    *,
    model: str | None = None,
    weights_file: str | Path | None = None,
    segmenter: Segmenter | None = None,
    out_dir: str | Path | None = None,
    opacity: float = 0.5,
    force: bool = False,
    strict: bool = False,
    offline: bool = False,
    reporter: Reporter | None = None,
    on_failure: Callable[[Any], None] | None = None,
) -> SegmentReport:
    """Segment images in input order. With `out_dir`: `<stem>_mask.png` (class indices, mode L, the
    input's size), `<stem>_color.png` and `<stem>_overlay.png`."""
    import numpy as np
    from PIL import Image

    from dlcli import media
    from dlcli.domain import DomainGuard
    from dlcli.results import InputFailure, Provenance, SegmentItem, SegmentReport

    if not 0.0 <= opacity <= 1.0:
        raise InputError(f"--opacity must be between 0 and 1 (got {opacity})")
    reporter = reporter or NullReporter()
    seg = segmenter or load_segmenter(runtime, model=model, weights_file=weights_file, offline=offline,
                                      reporter=reporter)
    sources = media.expand_inputs(list(inputs), offline=offline)
    # One distinct stem per input, and every refusal before the first image is read or written.
    stems = media.output_stems(sources)
    out_path = (media.check_outputs(Path(out_dir), [f"{st}_{kind}.png" for st in stems
                                                    for kind in ("mask", "color", "overlay")], force=force)
                if out_dir else None)
    results: list[Any] = []
    failures: list[Any] = []
    n_classes = seg.num_classes or 256
    guard = DomainGuard(seg.spec, FOR_PHOTOS, reporter)
    reporter.start(f"segmenting with {seg.spec.name}", float(len(sources)))
    t0 = time.perf_counter()
    try:
        for index, item in enumerate(media.iter_images(sources, mode=seg.mode, offline=offline, strict=strict)):
            if isinstance(item, Exception):
                failure = InputFailure(index=index, source=sources[index], error=item.message)
                failures.append(failure)
                if on_failure is not None:
                    on_failure(failure)
                reporter.advance(1)
                continue
            try:
                mask = seg.predict(item.image).numpy()
            except DLError:
                raise
            except Exception as exc:  # an image this model cannot take fails alone (exit 7)
                lines = str(exc).strip().splitlines()
                message = f"{item.source}: segmentation failed ({lines[0] if lines else type(exc).__name__})"
                if strict:
                    raise InputError(message) from None
                failure = InputFailure(index=index, source=item.source, error=message)
                failures.append(failure)
                if on_failure is not None:
                    on_failure(failure)
                reporter.advance(1)
                continue
            classes = mask_classes(seg, mask)
            files: dict[str, Any] = {}
            if out_path is not None:
                m8 = Image.fromarray(mask.astype(np.uint8, copy=False))  # uint8 2-D -> mode L
                stem = stems[index]
                files["mask"] = str(media.save_image(m8, out_path / f"{stem}_mask.png", force=force))
                files["color"] = str(media.save_image(color_mask(mask, n_classes), out_path / f"{stem}_color.png",
                                                      force=force))
                files["overlay"] = str(media.save_image(overlay(item.image, mask, n_classes, opacity),
                                                        out_path / f"{stem}_overlay.png", force=force))
            results.append(SegmentItem(index=index, source=item.source, width=item.image.size[0],
                                       height=item.image.size[1], classes=classes, files=files,
                                       warning=guard.warning(item.image)))
            reporter.advance(1)
    finally:
        reporter.finish()
    return SegmentReport(model=seg.spec.name, images=tuple(results), failures=tuple(failures),
                         seconds=time.perf_counter() - t0,
                         provenance=Provenance.collect(runtime, seg.spec.name, seg.loaded.sha256,
                                                       engine=getattr(seg.model, "engine", None)))


def evaluate(
    runtime: Runtime,
    *,
    model: str | None = None,
    weights_file: str | Path | None = None,
    data: str = "scenes",
    count: int = 500,
    seed: int | None = None,
    batch_size: int = 16,
    offline: bool = False,
    reporter: Reporter | None = None,
    pictures_dir: Path | None = None,
) -> SegmentEvalReport:
    """mIoU and pixel accuracy on held-out scenes (test seed) or an images/ + masks/ folder."""
    import numpy as np

    from dlcli.results import Provenance, SegmentEvalReport
    from dlcli.data.masks import MaskFolder
    from dlcli.evaluation.segmentation import evaluate_segmenter

    reporter = reporter or NullReporter()
    if count < 1:
        raise InputError(f"--count must be at least 1 (got {count})")
    if model is None and weights_file is None and data == "scenes":
        model = BUNDLED
    seg = load_segmenter(runtime, model=model, weights_file=weights_file, offline=offline, reporter=reporter)
    if data == "scenes":
        from dlcli.data import scenes

        scene_seed = scenes.TEST_SEED if seed is None else seed
        if seg.labels is not None and list(seg.labels) != list(scenes.CLASS_NAMES):
            raise WeightsError(f"{seg.spec.name} was not trained on scenes; evaluate it on its own data with --data DIR")
        from PIL import Image
        import torch

        def samples() -> Iterator[Any]:
            for i in range(count):
                s = scenes.make_scene(scene_seed, i)
                yield seg.transform(Image.fromarray(s.image)), torch.from_numpy(s.semantic.astype(np.int64))

        described, n = f"scenes seed {scene_seed}, {count} images", count
        num_classes = len(scenes.CLASS_NAMES)
    else:
        folder = MaskFolder(Path(data), size=0)
        num_classes = seg.num_classes or len(folder.classes)
        from PIL import Image
        import torch

        from dlcli.media import load_image

        def samples() -> Iterator[Any]:
            # Full resolution here (no resizing): the model's logits are upsampled to the mask's size.
            for img_path, mask_path in folder.pairs:
                yield seg.transform(load_image(str(img_path))), torch.from_numpy(folder._mask(mask_path))

        described, n = f"{data}, {len(folder)} images", len(folder)
    t0 = time.perf_counter()
    cm = evaluate_segmenter(seg.model, samples(), runtime, num_classes, batch_size=batch_size,
                            reporter=reporter, total=n)
    iou = cm.iou()
    written: list[Path] = []
    if pictures_dir is not None:  # per-class IoU bars and the pixel confusion matrix
        from dlcli.evaluation import pictures

        written = pictures.segmentation(cm.matrix, [seg.label(k) for k in range(num_classes)], pictures_dir)
    return SegmentEvalReport(model=seg.spec.name, data=described, images=n, miou=cm.mean_iou(),
                             pixel_accuracy=cm.pixel_accuracy(),
                             per_class_iou={seg.label(k): (None if np.isnan(v) else float(v)) for k, v in enumerate(iou)},
                             seconds=time.perf_counter() - t0,
                             provenance=Provenance.collect(runtime, seg.spec.name, seg.loaded.sha256),
                             pictures=tuple(str(p) for p in written))

