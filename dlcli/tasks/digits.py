"""Handwritten digits: the book's DeepConvNet as a `classify` architecture, the "mnist"
preprocessing preset that turns any photo or drawing of a digit into an MNIST-style 28x28
image, and the importer for the book's own pickled parameters.

`dl classify digit.png --model deepconvnet.mnist` works through this module: the weights entry
(weights/manifest.json) names the preset "mnist", which the classify task asks for.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Callable

from dlcli.errors import InputError, WeightsError
from dlcli.weights.presets import Preset, register_preset
from dlcli.weights import loader
from dlcli.weights.registry import register_arch
from dlcli.weights.spec import Arch, WeightsSpec

DIGIT_LABELS = [str(d) for d in range(10)]
FIT = 20  # MNIST fits each digit into a 20x20 box ...
SIZE = 28  # ... and centres its centre of mass in a 28x28 image.
_SHRINK_ABOVE = 4_000_000  # pixels


# --- the architecture -------------------------------------------------------------------------


def _build(num_classes: int = 10, hidden: int = 50, dropout: float = 0.5) -> Any:
    from dlcli.models.deepconvnet import build_deepconvnet

    return build_deepconvnet(num_classes=num_classes, hidden=hidden, dropout=dropout)


register_arch(Arch(
    "deepconvnet", "classify", _build,
    description="the book's deep CNN for MNIST digits (6 conv 3x3, 3 max-pools, 2 linear; 123,552 parameters)",
    default_config={},
))


# --- the "mnist" preset -----------------------------------------------------------------------


def mnist_style(img: Any, *, invert: str = "auto") -> Any:
    """Any image of one digit -> an MNIST-like 28x28 PIL "L" image (white ink on black).

    grayscale; invert when the background is light (`invert`: auto | yes | no); subtract the
    background and stretch the ink to 0..255; crop to the ink; resize so the longer side is 20
    keeping the aspect ratio; paste into 28x28 so the centre of mass sits in the middle, as
    LeCun's MNIST preparation did. A uniform image (no ink) is an InputError."""
    import numpy as np
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # A drawing on a transparent canvas: the strokes are what is opaque.
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32)
        if alpha.min() < 250:
            gray = np.asarray(rgba.convert("L"), dtype=np.float32)
            light_strokes = float((gray * alpha).sum() / max(alpha.sum(), 1.0)) > 127
            # Composite on a background of the opposite shade so the strokes stand out.
            bg = 0.0 if light_strokes else 255.0
            img = Image.fromarray((gray * alpha / 255 + bg * (1 - alpha / 255)).astype(np.uint8), mode="L")
    if img.width * img.height > _SHRINK_ABOVE:
        # A 48-megapixel photo of one digit: the result is 20x20, so work on a copy of at most
        # 2048 px a side; the float arrays below would otherwise take gigabytes.
        img = img.copy()
        img.thumbnail((2048, 2048), Image.Resampling.LANCZOS)
    a = np.asarray(img.convert("L"), dtype=np.float32)
    if a.size == 0:
        raise InputError("empty image")
    border = np.concatenate([a[0, :], a[-1, :], a[:, 0], a[:, -1]])
    background = float(np.median(border))
    if invert == "yes" or (invert == "auto" and background > 127):
        a = 255.0 - a
        background = 255.0 - background
    a = np.clip(a - background, 0.0, None)
    peak = float(a.max())
    if peak < 16:  # less than ~6% contrast: nothing that looks like ink
        raise InputError("found no digit in the image (it is almost uniform); crop it to one digit on a plain background")
    # Uneven lighting and paper grain leave a grey haze that MNIST never has: treat what the
    # border holds (up to a third of the ink's strength) as background too.
    border_left = np.concatenate([a[0, :], a[-1, :], a[:, 0], a[:, -1]])
    floor = min(float(np.percentile(border_left, 98)), peak / 3)
    a = np.clip((a - floor) * (255.0 / (peak - floor)), 0.0, 255.0)
    # Crop to the ink: pixels above a fifth of the peak, so faint paper texture does not count.
    ys, xs = np.nonzero(a > 51)
    a = a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = a.shape
    scale = FIT / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray(a.astype(np.uint8), mode="L").resize((nw, nh), Image.Resampling.LANCZOS)
    s = np.asarray(small, dtype=np.float32)
    total = float(s.sum())
    ys_idx, xs_idx = np.indices(s.shape)
    cy = float((ys_idx * s).sum() / total) if total else (nh - 1) / 2
    cx = float((xs_idx * s).sum() / total) if total else (nw - 1) / 2
    # Put the centre of mass on the image centre (13.5, 13.5 in pixel coordinates), kept in frame.
    top = int(round((SIZE - 1) / 2 - cy))
    left = int(round((SIZE - 1) / 2 - cx))
    top = min(max(top, 0), SIZE - nh)
    left = min(max(left, 0), SIZE - nw)
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top : top + nh, left : left + nw] = s
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), mode="L")


def _mnist_preset(spec: WeightsSpec, args: dict[str, Any]) -> Callable[[Any], Any]:
    """PIL image -> float tensor 1 x 28 x 28 in [0, 1] (the book's input scaling)."""
    invert = str(args.get("invert", "auto"))
    if invert not in ("auto", "yes", "no"):
        raise WeightsError(f"preset 'mnist': invert must be auto, yes or no, not {invert!r}")

    def transform(img: Any) -> Any:
        import numpy as np
        import torch

        pre = mnist_style(img, invert=invert)
        return torch.from_numpy(np.asarray(pre, dtype=np.float32).copy()).div_(255.0).unsqueeze(0)

    return transform


register_preset(Preset(
    "mnist", _mnist_preset, "L",
    "MNIST-style digits: grayscale, invert a light background, crop to the ink, fit 20x20, centre of mass in 28x28",
    # The digit finder refuses a blank picture, so its shape is stated, not measured.
    shape=lambda spec, args: (1, SIZE, SIZE),
))


# --- the book's pickle ------------------------------------------------------------------------

_BOOK_KEYS = tuple(f"{p}{i}" for i in range(1, 9) for p in ("W", "b"))
# The only globals a pickled dict of numpy arrays needs. numpy 2 moved numpy.core to numpy._core;
# pickles written by numpy 1 still name the old module.
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    # Protocol-2 pickles store an array's raw bytes as _codecs.encode(latin-1 text): a pure
    # data transform (torch's weights_only unpickler admits it for the same reason).
    ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global (os.system, eval, a
    class of some module) is refused before it can be called."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise WeightsError(
                f"refusing to load this pickle: it references {module}.{name}, and only a dict of numpy arrays "
                "is accepted (a pickle can run code)"
            )
        import numpy as np

        if module == "_codecs":
            import _codecs

            return _codecs.encode
        if name == "ndarray":
            return np.ndarray
        if name == "dtype":
            return np.dtype
        try:
            import numpy._core.multiarray as ma  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1
            import numpy.core.multiarray as ma  # type: ignore[no-redef]
        return getattr(ma, name)


def read_book_pickle(path: Path) -> dict[str, Any]:
    """The book's parameter pickle as {W1..W8, b1..b8: numpy arrays}, through the restricted
    unpickler; anything else is a WeightsError."""
    import numpy as np

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except WeightsError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise WeightsError(f"{path} is not a readable pickle of the book's parameters ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not the book's dict of parameters W1..W8, b1..b8")
    missing = [k for k in _BOOK_KEYS if k not in obj]
    extra = [str(k) for k in obj if k not in _BOOK_KEYS]
    if missing or extra:
        raise WeightsError(f"{path} is not the book's DeepConvNet parameters: "
                           + "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "",
                                                    f"unexpected {', '.join(extra)}" if extra else "") if x))
    for k, v in obj.items():
        if not isinstance(v, np.ndarray) or v.dtype.kind != "f":
            raise WeightsError(f"{path}: {k} is not a floating-point numpy array")
    return obj


def book_to_state_dict(params: dict[str, Any]) -> dict[str, Any]:
    """The book's W1..W8/b1..b8 -> our DeepConvNet state dict.

    Convolutions have the same (out, in, 3, 3) layout. The book's affine weights are (in, out):
    transposed. The book's flatten is NumPy's C-order reshape of (N, C, H, W), the same as
    torch's. At test time the book multiplies by (1 - 0.5) at each of its two dropout layers
    (after the first ReLU'd linear layer and after the logits) where PyTorch's inverted dropout
    does nothing, so logits = 0.5 * (W8 . (0.5 * h) + b8): fold 0.25 into W8 and 0.5 into b8."""
    import torch

    from dlcli.models.deepconvnet import DeepConvNet

    ref = DeepConvNet()
    convs = [n for n, m in ref.named_modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [n for n, m in ref.named_modules() if isinstance(m, torch.nn.Linear)]
    state: dict[str, Any] = {}

    def t(a: Any) -> Any:
        return torch.from_numpy(a.astype("float32", copy=True))

    for i, name in enumerate(convs, start=1):
        state[f"{name}.weight"], state[f"{name}.bias"] = t(params[f"W{i}"]), t(params[f"b{i}"])
    w7, b7, w8, b8 = params["W7"], params["b7"], params["W8"], params["b8"]
    state[f"{linears[0]}.weight"], state[f"{linears[0]}.bias"] = t(w7.T), t(b7)
    state[f"{linears[1]}.weight"], state[f"{linears[1]}.bias"] = t(0.25 * w8.T), t(0.5 * b8)
    own = ref.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise WeightsError(f"the pickle's arrays do not fit DeepConvNet: {'; '.join(wrong[:3])}")
    return state


def import_book_pickle(path: Path) -> dict[str, Any]:
    """Importer for `dl weights import deepconvnet.TAG FILE.pkl`."""
    return book_to_state_dict(read_book_pickle(path))


loader.register_importer("deepconvnet", import_book_pickle)
