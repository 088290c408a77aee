"""A seeded synthetic scene world: coloured shapes on textured backgrounds.

No COCO/VOC data can be had offline, so detection, segmentation and captioning train and evaluate on
this world instead. Every scene is a pure function of ``(seed, index)``: the same pair gives the same
pixels, boxes, masks and caption on any machine (NumPy's ``default_rng`` seeded with the pair), so a
"held-out set" is just a different seed and no files need to be shipped.

Per scene: an RGB image (``size`` x ``size``, default 128), 1-4 objects, each with a shape class, a
colour and a size word; instance masks of the *visible* pixels (later objects occlude earlier ones),
boxes enclosing those masks (xyxy, pixel edges: ``x1 = last column + 1``), a semantic mask (0 =
background, else the shape's class index) and a short, regular caption listing the objects from left to
right, e.g. ``"a large red circle left of a small blue square"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from dlcli.errors import InputError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
"""Object classes; a shape's label is its index here + 1 (0 is background)."""

CLASS_NAMES: tuple[str, ...] = ("background",) + SHAPES
"""Label index -> name, background first (the layout torchvision detectors and FCNs expect)."""

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (45, 75, 215),
    "yellow": (235, 215, 45),
    "purple": (150, 55, 190),
    "orange": (245, 135, 25),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

SIZES: tuple[str, ...] = ("small", "large")
# Half-extent in pixels (at size=128) per size word; the ranges do not touch, so "small"/"large" in a
# caption is always decidable from the pixels.
_HALF_EXTENT: dict[str, tuple[float, float]] = {"small": (7.0, 11.0), "large": (15.0, 22.0)}

RELATION = "left of"
CAPTION_WORDS: tuple[str, ...] = ("a", "left", "of") + SIZES + COLOR_NAMES + SHAPES
"""Every word a caption can contain (for building a caption vocabulary)."""

TRAIN_SEED = 0
VAL_SEED = 1
TEST_SEED = 2
"""Conventional seeds: train on TRAIN_SEED, pick checkpoints on VAL_SEED, report on TEST_SEED."""

MIN_OBJECTS = 1
MAX_OBJECTS = 4
_MIN_VISIBLE_FRACTION = 0.6  # an occluded object keeps at least this share of its pixels
_MIN_VISIBLE_PIXELS = 40


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene, in drawing order (later ones are on top)."""

    shape: str
    color: str
    size: str
    label: int
    box: tuple[int, int, int, int]  # xyxy of the visible pixels, x1/y1 exclusive

    @property
    def phrase(self) -> str:
        return f"a {self.size} {self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """One generated scene (NumPy arrays; see :class:`SceneDataset` for tensors)."""

    image: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (N, 4) float32 xyxy
    labels: np.ndarray  # (N,) int64, 1..len(SHAPES)
    masks: np.ndarray  # (N, H, W) bool, visible pixels of each instance
    semantic: np.ndarray  # (H, W) uint8, 0 = background else label
    caption: str
    objects: tuple[SceneObject, ...]
    seed: int
    index: int


def _shape_mask(shape: str, cx: float, cy: float, r: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        s = 0.85 * r  # so a square's area is close to the circle's of the same size word
        return (np.abs(dx) <= s) & (np.abs(dy) <= s)
    if shape == "triangle":
        # Upright isosceles triangle: apex at the top, base at the bottom.
        t = (dy + r) / (2 * r)
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= r * t)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    raise ValueError(f"unknown shape {shape!r}")


def _background(rng: np.random.Generator, size: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A low-saturation textured background, so saturated objects stay visible but not trivially."""
    base = rng.uniform(70, 170)
    tint = rng.uniform(-12, 12, size=3)
    kind = rng.integers(0, 4)
    if kind == 0:  # smooth gradient
        angle = rng.uniform(0, 2 * np.pi)
        tex = ((np.cos(angle) * xs + np.sin(angle) * ys) / size - 0.5) * rng.uniform(20, 50)
    elif kind == 1:  # stripes
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(0.15, 0.6)
        tex = np.sin((np.cos(angle) * xs + np.sin(angle) * ys) * freq) * rng.uniform(8, 20)
    elif kind == 2:  # checkerboard
        cell = int(rng.integers(6, 20))
        tex = (((xs // cell).astype(int) + (ys // cell).astype(int)) % 2 - 0.5) * rng.uniform(15, 35)
    else:  # blotchy noise: coarse random grid upsampled
        coarse = rng.normal(0, 1, size=(size // 16 + 1, size // 16 + 1))
        tex = np.kron(coarse, np.ones((16, 16)))[:size, :size] * rng.uniform(8, 18)
    img = base + tex[..., None] + tint[None, None, :]
    return img.astype(np.float32)


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """An HxWx3 uint8 scene image as the 3xHxW float tensor in [0, 1] the scene models take."""
    return torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)


def make_scene(
    seed: int,
    index: int,
    *,
    size: int = 128,
    min_objects: int = MIN_OBJECTS,
    max_objects: int = MAX_OBJECTS,
) -> Scene:
    """Generate scene number ``index`` of the world seeded by ``seed`` (deterministic)."""
    if size < 32:
        raise InputError(f"scene size must be at least 32 pixels, got {size}")
    if not 1 <= min_objects <= max_objects:
        raise InputError(f"need 1 <= min_objects <= max_objects, got {min_objects}..{max_objects}")
    if seed < 0 or index < 0:
        raise InputError(f"scene seed and index must be non-negative, got seed={seed} index={index}")
    rng = np.random.default_rng([int(seed), int(index)])
    scale = size / 128.0
    coords = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    xs, ys = np.meshgrid(coords, coords)
    image = _background(rng, size, xs, ys)

    # Visibility floor in pixels, scaled with the image area (40 at 128x128) so small sizes still fit.
    min_pixels = max(4, round(_MIN_VISIBLE_PIXELS * scale * scale))
    n_wanted = int(rng.integers(min_objects, max_objects + 1))
    owner = np.full((size, size), -1, dtype=np.int64)  # which object is visible at each pixel
    full_masks: list[np.ndarray] = []
    specs: list[tuple[str, str, str]] = []
    for _ in range(n_wanted):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        color = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
        size_word = SIZES[int(rng.integers(len(SIZES)))]
        lo, hi = _HALF_EXTENT[size_word]
        for _attempt in range(30):
            r = rng.uniform(lo, hi) * scale
            cx = rng.uniform(r + 1, size - r - 1)
            cy = rng.uniform(r + 1, size - r - 1)
            mask = _shape_mask(shape, cx, cy, r, xs, ys)
            if _placement_ok(mask, owner, full_masks, specs, color, min_pixels):
                break
        else:
            continue  # no room for this one; the scene simply has fewer objects
        owner[mask] = len(full_masks)
        full_masks.append(mask)
        specs.append((shape, color, size_word))
    if not full_masks:  # the first object always fits an empty canvas; kept as a guard
        raise RuntimeError("scene generator placed no object")

    objects: list[SceneObject] = []
    masks = np.stack([owner == i for i in range(len(full_masks))])
    semantic = np.zeros((size, size), dtype=np.uint8)
    for i, (shape, color, size_word) in enumerate(specs):
        label = SHAPES.index(shape) + 1
        rgb = np.array(COLORS[color], dtype=np.float32) + rng.uniform(-15, 15)
        image[masks[i]] = rgb
        semantic[masks[i]] = label
        rows = np.flatnonzero(masks[i].any(axis=1))
        cols = np.flatnonzero(masks[i].any(axis=0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        objects.append(SceneObject(shape, color, size_word, label, box))

    image += rng.normal(0, 6, size=image.shape).astype(np.float32)  # sensor-like noise everywhere
    image_u8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    boxes = np.array([o.box for o in objects], dtype=np.float32).reshape(-1, 4)
    labels = np.array([o.label for o in objects], dtype=np.int64)
    return Scene(
        image=image_u8,
        boxes=boxes,
        labels=labels,
        masks=masks,
        semantic=semantic,
        caption=caption_for(objects),
        objects=tuple(objects),
        seed=int(seed),
        index=int(index),
    )


def _placement_ok(
    mask: np.ndarray,
    owner: np.ndarray,
    full_masks: list[np.ndarray],
    specs: list[tuple[str, str, str]],
    color: str,
    min_pixels: int = _MIN_VISIBLE_PIXELS,
) -> bool:
    """Accept a new object if every earlier one stays mostly visible and no same-colour overlap.

    Same-colour objects that touch would merge into one blob with no visible boundary, which makes the
    instance annotation unlearnable; heavy occlusion would make the caption's size word a lie.
    """
    area = int(mask.sum())
    if area < min_pixels:
        return False
    for i, full in enumerate(full_masks):
        visible = owner == i
        if not (visible & mask).any():
            continue
        if specs[i][1] == color:
            return False
        remaining = int((visible & ~mask).sum())
        if remaining < _MIN_VISIBLE_FRACTION * int(full.sum()) or remaining < min_pixels:
            return False
    return True


def caption_for(objects: list[SceneObject] | tuple[SceneObject, ...]) -> str:
    """Objects from left to right (by box centre), joined by "left of"."""
    ordered = sorted(objects, key=lambda o: (o.box[0] + o.box[2], o.box[1] + o.box[3]))
    return f" {RELATION} ".join(o.phrase for o in ordered)


class SceneDataset(Dataset):
    """``n`` scenes of the world ``seed`` as tensors, in the torchvision detection layout.

    ``ds[i]`` -> ``(image, target)``: image float32 (3, H, W) in [0, 1]; target dict with ``boxes``
    (N, 4) float32 xyxy, ``labels`` (N,) int64, ``masks`` (N, H, W) uint8, ``semantic`` (H, W) int64,
    ``caption`` str and ``index`` int.
    """

    def __init__(self, n: int, seed: int = TRAIN_SEED, *, size: int = 128, offset: int = 0) -> None:
        if n < 1:
            raise InputError(f"a scene dataset needs at least 1 scene, got {n}")
        self.n, self.seed, self.size, self.offset = int(n), int(seed), int(size), int(offset)

    def __len__(self) -> int:
        return self.n

    def scene(self, i: int) -> Scene:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return make_scene(self.seed, self.offset + i, size=self.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        s = self.scene(i)
        image = image_tensor(s.image)
        target = {
            "boxes": torch.from_numpy(s.boxes),
            "labels": torch.from_numpy(s.labels),
            "masks": torch.from_numpy(s.masks.astype(np.uint8)),
            "semantic": torch.from_numpy(s.semantic.astype(np.int64)),
            "caption": s.caption,
            "index": s.index,
        }
        return image, target


def collate_scenes(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """DataLoader collate for variable object counts: lists instead of stacked tensors."""
    images, targets = zip(*batch)
    return list(images), list(targets)


@dataclass(frozen=True)
class ClipFrame:
    """One frame of a moving-scene clip: pixels and the ground truth of that frame."""

    image: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (N, 4) float32 xyxy, x1/y1 exclusive
    labels: np.ndarray  # (N,) int64
    index: int


def make_clip(seed: int, index: int, frames: int, *, size: int = 128, objects: int = 2,
              speed: float = 2.0) -> Iterator[ClipFrame]:
    """Clip number ``index`` of the world ``seed``: ``frames`` frames (a generator: one frame in memory
    at a time, however long the clip) of a fixed textured background with ``objects`` shapes moving
    sideways and bouncing off the edges, with fresh sensor noise in every frame (as a camera's).

    Each object keeps to its own horizontal lane, so objects never occlude one another and every
    frame's boxes are the shapes' full extents. For video tests and benchmarks."""
    if frames < 1:
        raise InputError(f"a clip needs at least 1 frame, got {frames}")
    if not 1 <= objects <= 3:
        raise InputError(f"a clip holds 1 to 3 objects, got {objects}")
    if size < 64:
        raise InputError(f"clip size must be at least 64 pixels, got {size}")
    rng = np.random.default_rng([int(seed), int(index), 7])  # 7: apart from make_scene's streams
    scale = size / 128.0
    coords = np.arange(size, dtype=np.float32) + 0.5
    xs, ys = np.meshgrid(coords, coords)
    background = _background(rng, size, xs, ys)
    lane = size / objects
    movers = []
    colors = list(rng.permutation(len(COLOR_NAMES)))
    for k in range(objects):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        size_word = SIZES[int(rng.integers(len(SIZES)))] if lane >= 48 * scale else "small"
        lo, hi = _HALF_EXTENT[size_word]
        r = min(rng.uniform(lo, hi) * scale, lane / 2 - 2)
        cy = k * lane + lane / 2
        cx = rng.uniform(r + 1, size - r - 1)
        vx = speed * scale * (1 if rng.random() < 0.5 else -1) * rng.uniform(0.7, 1.3)
        rgb = np.array(COLORS[COLOR_NAMES[colors[k]]], dtype=np.float32) + rng.uniform(-15, 15)
        movers.append([shape, r, cx, cy, vx, rgb, SHAPES.index(shape) + 1])
    for t in range(frames):
        image = background.copy()
        boxes, labels = [], []
        for m in movers:
            shape, r, cx, cy, vx, rgb, label = m
            mask = _shape_mask(shape, cx, cy, r, xs, ys)
            image[mask] = rgb
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            boxes.append((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))
            labels.append(label)
            # Move, bouncing off the edges.
            cx += vx
            if cx - r < 1 or cx + r > size - 1:
                vx = -vx
                cx = min(max(cx, r + 1), size - r - 1)
            m[2], m[4] = cx, vx
        noise = np.random.default_rng([int(seed), int(index), 7, t]).normal(0, 6, size=image.shape)
        image_u8 = np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)
        yield ClipFrame(image_u8, np.array(boxes, dtype=np.float32).reshape(-1, 4),
                        np.array(labels, dtype=np.int64), t)
