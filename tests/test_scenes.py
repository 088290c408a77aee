"""The synthetic scene world: determinism and annotation consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlcli.data import scenes
from dlcli.errors import InputError


def test_same_seed_and_index_give_identical_scenes() -> None:
    a, b = scenes.make_scene(7, 3), scenes.make_scene(7, 3)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.boxes, b.boxes)
    assert a.caption == b.caption


def test_different_index_or_seed_changes_the_scene() -> None:
    base = scenes.make_scene(0, 0).image
    assert not np.array_equal(base, scenes.make_scene(0, 1).image)
    assert not np.array_equal(base, scenes.make_scene(1, 0).image)


@pytest.mark.parametrize("index", range(40))
def test_boxes_enclose_masks_and_semantic_agrees(index: int) -> None:
    s = scenes.make_scene(0, index)
    n = len(s.objects)
    assert scenes.MIN_OBJECTS <= n <= scenes.MAX_OBJECTS
    assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
    assert s.masks.shape == (n, 128, 128) and s.boxes.shape == (n, 4)
    for mask, box, label in zip(s.masks, s.boxes, s.labels):
        ys, xs = np.nonzero(mask)
        assert len(xs) >= 40
        x0, y0, x1, y1 = box
        # Tight: the box's edges touch the mask (x1/y1 exclusive).
        assert xs.min() == x0 and xs.max() + 1 == x1
        assert ys.min() == y0 and ys.max() + 1 == y1
        assert (s.semantic[mask] == label).all()
    # Instances do not share pixels, and the semantic mask is exactly their union.
    assert s.masks.sum(axis=0).max() <= 1
    assert np.array_equal(s.semantic > 0, s.masks.any(axis=0))


def test_caption_lists_objects_left_to_right() -> None:
    for i in range(20):
        s = scenes.make_scene(3, i)
        parts = s.caption.split(" left of ")
        assert len(parts) == len(s.objects)
        centres = sorted((o.box[0] + o.box[2], o.phrase) for o in s.objects)
        assert [p for _, p in centres] == parts
        assert set(s.caption.split()) <= set(scenes.CAPTION_WORDS)


def test_dataset_tensors() -> None:
    ds = scenes.SceneDataset(3, seed=5)
    image, target = ds[2]
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["masks"].shape[1:] == (128, 128)
    assert target["semantic"].shape == (128, 128)
    assert target["caption"] == scenes.make_scene(5, 2).caption
    with pytest.raises(IndexError):
        ds[3]
    images, targets = scenes.collate_scenes([ds[0], ds[1]])
    assert len(images) == 2 and len(targets) == 2


def test_bad_arguments_are_input_errors() -> None:
    with pytest.raises(InputError):
        scenes.make_scene(0, 0, size=8)
    with pytest.raises(InputError):
        scenes.make_scene(-1, 0)
    with pytest.raises(InputError):
        scenes.SceneDataset(0)


@pytest.mark.parametrize("size", [32, 48, 64, 200])
def test_other_sizes_always_have_objects_inside_the_image(size: int) -> None:
    for i in range(30):
        s = scenes.make_scene(1, i, size=size)
        assert s.image.shape == (size, size, 3) and len(s.objects) >= 1
        assert (s.boxes[:, 2] <= size).all() and (s.boxes[:, 3] <= size).all()
