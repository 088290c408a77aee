"""Image inputs: every way a file can be bad gives a one-line error naming it; modes convert right."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcli import media
from dlcli.errors import InputError


def _png(path: Path, img: Image.Image) -> Path:
    img.save(path)
    return path


def test_missing_zero_byte_non_image_truncated(tmp_path):
    with pytest.raises(InputError, match=r"nope.jpg: no such file"):
        media.load_image(str(tmp_path / "nope.jpg"))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.png: empty file \(0 bytes\)"):
        media.load_image(str(empty))
    text = tmp_path / "notes.jpg"
    text.write_text("hello, not an image")
    with pytest.raises(InputError, match=r"notes.jpg: not an image"):
        media.load_image(str(text))
    full = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full, "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    with pytest.raises(InputError, match=r"cut.jpg: image is truncated or corrupt"):
        media.load_image(str(cut))


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    big = _png(tmp_path / "big.png", Image.new("L", (400, 300)))
    with pytest.raises(InputError, match=r"big.png: 400x300 pixels is over the limit"):
        media.decode_image(big.read_bytes(), "big.png", max_pixels=100_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL's own bomb check, 2x over its limit
    with pytest.raises(InputError, match="big.png"):
        media.load_image(str(big))


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert media.load_image(str(path)).size == (20, 40)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1", "I", "F"])
def test_modes_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (8, 8), (200, 100, 50)).convert(mode) if mode not in ("I;16", "I", "F") else None
    if mode == "I;16":
        img = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    elif mode == "I":
        img = Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 1000)
    elif mode == "F":
        img = Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8))
    path = tmp_path / f"x.{'tif' if mode in ('CMYK', 'I;16', 'I', 'F') else 'png'}"
    img.save(path)
    out = media.load_image(str(path))
    assert out.mode == "RGB" and out.size == (8, 8)
    if mode == "I;16":
        assert out.getpixel((0, 0)) == (255, 255, 255)  # scaled, not clipped to 255 from 65535 by luck
    if mode == "I":
        assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((7, 7)) == (255, 255, 255)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    img = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))  # mid-grey in 16 bits
    path = tmp_path / "mid.png"
    img.save(path)
    assert media.load_image(str(path), mode="L").getpixel((0, 0)) == 128


def test_transparency_is_composited_on_white(tmp_path):
    path = _png(tmp_path / "clear.png", Image.new("RGBA", (4, 4), (0, 0, 0, 0)))
    assert media.load_image(str(path)).getpixel((0, 0)) == (255, 255, 255)


def test_folders_globs_stdin_and_urls(tmp_path):
    for name in ("b.png", "a.png", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jpg").write_bytes(b"x")
    assert media.expand_inputs([str(tmp_path)]) == [str(tmp_path / p) for p in ("a.png", "b.png", "sub/d.jpg")]
    assert media.expand_inputs([str(tmp_path / "*.png")]) == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    with pytest.raises(InputError, match=r"\*.gif: no file matches"):
        media.expand_inputs([str(tmp_path / "*.gif")])
    with pytest.raises(InputError, match="URLs cannot be read in offline mode"):
        media.expand_inputs(["https://example.org/cat.jpg"], offline=True)
    buf = io.BytesIO()
    Image.new("RGB", (5, 6)).save(buf, "PNG")
    assert media.load_image("-", stdin=io.BytesIO(buf.getvalue())).size == (5, 6)
    with pytest.raises(InputError, match="nothing on standard input"):
        media.load_image("-", stdin=io.BytesIO(b""))


def test_iter_images_reports_and_skips_bad_ones(tmp_path):
    good = _png(tmp_path / "good.png", Image.new("RGB", (3, 3)))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    items = list(media.iter_images([str(good), str(bad)], strict=False))
    assert isinstance(items[0], media.LoadedImage) and isinstance(items[1], InputError)
    with pytest.raises(InputError, match="bad.png"):
        list(media.iter_images([str(good), str(bad)], strict=True))


def test_save_is_atomic_and_never_overwrites_without_force(tmp_path):
    out = tmp_path / "out.png"
    media.save_image(Image.new("RGB", (2, 2), (1, 2, 3)), out)
    with pytest.raises(InputError, match="already exists; pass --force"):
        media.save_image(Image.new("RGB", (2, 2)), out)
    media.save_image(Image.new("RGB", (2, 2), (9, 9, 9)), out, force=True)
    assert Image.open(out).getpixel((0, 0)) == (9, 9, 9)

    class Boom(Exception):
        pass

    img = Image.new("RGB", (2, 2))
    real_save = Image.Image.save

    def failing(self, fp, *a, **k):
        real_save(self, fp, *a, **k)
        raise Boom

    Image.Image.save = failing
    try:
        with pytest.raises(Boom):
            media.save_image(img, tmp_path / "half.png")
    finally:
        Image.Image.save = real_save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no half-written file


def test_grid_and_boxes_draw():
    tiles = [Image.new("L", (28, 28), 0) for _ in range(5)]
    grid = media.make_grid(tiles, 3, scale=2, corner_labels=[("7", "1")] * 5)
    assert grid.size == (3 * 58 + 2, 2 * 58 + 2)
    boxed = media.draw_boxes(Image.new("RGB", (50, 50)), [(5, 5, 30, 30)], ["dog 0.9"], media.palette(1))
    assert boxed.getpixel((5, 20)) == media.palette(1)[0]


def test_atomic_outputs_get_normal_permissions_not_mkstemps_private_ones(tmp_path: Path) -> None:
    import os
    import stat

    from dlcli.atomic import atomic_output, atomic_target

    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "new.png") as tmp:
            tmp.write_bytes(b"x")
        assert stat.S_IMODE((tmp_path / "new.png").stat().st_mode) == 0o644
        shared = tmp_path / "shared.txt"
        shared.write_text("old")
        shared.chmod(0o664)
        with atomic_target(shared) as tmp:
            tmp.write_text("new")
        assert stat.S_IMODE(shared.stat().st_mode) == 0o664 and shared.read_text() == "new"
    finally:
        os.umask(old)
