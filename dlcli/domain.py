"""What a model knows: cheap image statistics that tell whether an input looks like the world some
weights were trained on, so a model trained on synthetic scenes or on MNIST digits can say so when it
is shown a photo instead of answering with shapes or digits and saying nothing.

Weights name their world in their metadata (`extra.domain`: "scenes" or "digits"); the tasks ask
`check(domain, image)` for each input and pass a notice on when it answers no. The rules and their
thresholds were chosen by measurement (`python benchmarks/domain_check.py`): no false alarm on 500
held-out scenes nor on the 10,000 MNIST test digits, a warning on every photo in samples/, with a
margin on both sides (the README lists the figures).

- scenes: the scene world paints flat objects in six saturated colours on a low-saturation
  textured background. Nearly every pixel of a scene is either greyish (channel spread <= 45) or
  close to one of the six colours; a photo has many pixels that are neither (skin, fur, wood,
  sky…), and a grey photo has no pixel of the palette at all.
- digits: MNIST is one light digit on a plain dark background (or, for a drawing, dark on light).
  After subtracting the border's shade (and inverting a light background), most pixels are
  background, few are in between background and ink, and the ink fills a fair share of its own
  bounding box; photos have many mid-tones, and a star field's sparse dots fill almost none of it.

NumPy and PIL only (no torch): tasks call it on every input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dlcli.progress import Reporter

_MAX_SIDE = 256  # larger inputs are subsampled (nearest: keeps the colours' distribution) before measuring

# The scene world's six object colours (dlcli.data.scenes.COLORS, copied so that this module stays
# below data/; tests/test_domain.py checks that they agree).
SCENE_PALETTE = np.array([(215, 40, 40), (40, 170, 60), (45, 75, 215), (235, 215, 45), (150, 55, 190),
                          (245, 135, 25)], dtype=np.float32)
SCENE_GREY_SPREAD = 45.0  # background: max - min over RGB (tint +-12 plus noise)
SCENE_PALETTE_DISTANCE = 35.0  # object: RGB distance to a palette colour after a common shift
SCENE_MIN_EXPLAINED = 0.95  # scenes: >= 0.994 of pixels explained; samples' photos: <= 0.65
SCENE_MIN_PALETTE = 0.0015  # scenes: >= 0.006 of pixels in the palette (one small object)

DIGIT_INK = 0.5  # of the ink's peak, after removing the background
DIGIT_BACKGROUND = 0.2
DIGIT_MAX_MIDTONES = 0.10  # MNIST test: <= 0.064 of pixels between background and ink; photos >= 0.159
DIGIT_MIN_BACKGROUND = 0.55  # MNIST test: >= 0.639 of pixels background
DIGIT_MIN_INK_DENSITY = 0.10  # MNIST test: the ink fills >= 0.132 of its bounding box; a star field 0.016


@dataclass(frozen=True)
class Domain:
    """A world some weights were trained on."""

    name: str
    knows: str  # what the model knows, for the notice: "... knows only {knows}"
    measure: Callable[[Any], dict[str, float]]
    fits: Callable[[dict[str, float]], bool]


@dataclass(frozen=True)
class DomainCheck:
    """The verdict on one input: the measured statistics and whether they fit the domain."""

    domain: str
    fits: bool
    stats: dict[str, float]


def _pixels(image: Any, mode: str) -> np.ndarray:
    img = image if image.mode == mode else image.convert(mode)
    w, h = img.size
    step = max(1, -(-max(w, h) // _MAX_SIDE))  # ceil: the subsampled side is <= _MAX_SIDE
    a = np.asarray(img, dtype=np.float32)
    return a[::step, ::step] if step > 1 else a


def scene_stats(image: Any) -> dict[str, float]:
    """Share of pixels a scene explains (greyish background or a palette colour) and share of palette pixels."""
    x = _pixels(image, "RGB")
    grey = (x.max(axis=2) - x.min(axis=2)) <= SCENE_GREY_SPREAD
    # Objects are painted with the colour shifted by up to +-15 on all channels, plus noise: the
    # distance to colour c after the best such shift s = clip(mean(x - c)), expanded as
    # |x - c|^2 - 6 s mean(x - c) + 3 s^2 so that it runs on (pixels, 6) arrays only.
    # Only coloured pixels can be near the palette (every palette colour spreads over 100 between
    # its channels, and a shift does not change the spread), so the greys are skipped.
    flat = x[~grey]
    c = SCENE_PALETTE
    sq = (flat**2).sum(axis=1)[:, None] - 2.0 * flat @ c.T + (c**2).sum(axis=1)[None, :]
    mean = (flat.sum(axis=1)[:, None] - c.sum(axis=1)[None, :]) / 3.0
    shift = np.clip(mean, -20.0, 20.0)
    distance2 = sq - 6.0 * shift * mean + 3.0 * shift**2
    palette = int(np.count_nonzero(distance2.min(axis=1, initial=np.inf) <= SCENE_PALETTE_DISTANCE**2))
    return {"explained": (int(grey.sum()) + palette) / grey.size, "palette": palette / grey.size}


def scene_fits(s: dict[str, float]) -> bool:
    return s["explained"] >= SCENE_MIN_EXPLAINED and s["palette"] >= SCENE_MIN_PALETTE


def digit_stats(image: Any) -> dict[str, float]:
    """Shares of background and mid-tone pixels, and how much of its bounding box the ink fills."""
    a = _pixels(image, "L")
    border = np.concatenate([a[0, :], a[-1, :], a[:, 0], a[:, -1]])
    background = float(np.median(border))
    if background > 127:  # dark ink on light paper: look at it as MNIST does, light on dark
        a, background = 255.0 - a, 255.0 - background
    a = np.clip(a - background, 0.0, None)
    peak = float(a.max())
    if peak <= 0:
        return {"background": 1.0, "midtones": 0.0, "ink_density": 0.0}
    n = a / peak
    ink = n > DIGIT_INK
    ys, xs = np.nonzero(ink)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    return {
        "background": float((n < DIGIT_BACKGROUND).mean()),
        "midtones": float(((n >= DIGIT_BACKGROUND) & (n <= DIGIT_INK)).mean()),
        "ink_density": float(ink.sum() / box),
    }


def digit_fits(s: dict[str, float]) -> bool:
    return (s["midtones"] <= DIGIT_MAX_MIDTONES and s["background"] >= DIGIT_MIN_BACKGROUND
            and s["ink_density"] >= DIGIT_MIN_INK_DENSITY)


DOMAINS: dict[str, Domain] = {
    "scenes": Domain("scenes", "the synthetic scene world (flat shapes on a plain background)", scene_stats, scene_fits),
    "digits": Domain("digits", "single handwritten digits (MNIST: one digit on a plain background)", digit_stats,
                     digit_fits),
}


def domain_of(spec: Any) -> Domain | None:
    """The domain a weights entry declares (`extra.domain`), or None for a general model."""
    name = (getattr(spec, "extra", None) or {}).get("domain")
    return DOMAINS.get(str(name)) if name else None


def check(domain: Domain, image: Any) -> DomainCheck:
    """Measure one input (a PIL image, as the task loaded it) against `domain`."""
    stats = domain.measure(image)
    return DomainCheck(domain.name, domain.fits(stats), {k: round(v, 4) for k, v in stats.items()})


def notice(model: str, domain: Domain, instead: str | None) -> str:
    """The one-line warning: what `model` knows and what to use for other inputs."""
    text = f"{model} knows only {domain.knows}"
    return f"{text}; {instead}" if instead else text


class DomainGuard:
    """Checks each input of a run against the weights' domain: `warning(image)` gives the per-image
    warning (None when it fits), and the first misfit is reported once through `reporter`."""

    def __init__(self, spec: Any, instead: str | None, reporter: Reporter | None = None) -> None:
        self.domain = domain_of(spec)
        self.message = notice(spec.name, self.domain, instead) if self.domain else None
        self.reporter = reporter
        self.warned = 0

    def warning(self, image: Any) -> str | None:
        if self.domain is None:
            return None
        if check(self.domain, image).fits:
            return None
        if self.warned == 0 and self.reporter is not None:
            self.reporter.message(self.message)
        self.warned += 1
        return self.message
