"""Images in and out: robust loading (files, folders, globs, stdin, URLs), atomic saving, grids
and boxes. Torch-free: tasks convert PIL images to tensors themselves."""

from __future__ import annotations

import functools
import glob
import io
import os
import stat
import sys
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from PIL import Image, ImageDraw, ImageFile, ImageFont, ImageOps, UnidentifiedImageError

from dlcli.atomic import atomic_output, check_output_dir, check_writable, regular_file_stat
from dlcli.errors import InputError, NetworkError
from dlcli.offline import offline_mode

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
# Limits on what a file controls (README "Limits"). A 48-megapixel phone photo fits; a crafted file
# that says 60000x60000 in a few hundred bytes does not get decoded.
MAX_PIXELS = 50_000_000
# The long side over the short side. Every preset resizes by the short side (ImageNet's 256, a
# detector's 800), so a 1x60000 strip would become 256x15,360,000: a memory bomb by dimension,
# not by pixels. 50:1 is wider than any panorama a model can read.
MAX_ASPECT = 50
MAX_IMAGE_BYTES = 512 << 20
MAX_DOWNLOAD_BYTES = 64 << 20
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class LoadedImage:
    source: str  # what the user typed (a path, "-", a URL), for messages and results
    image: Image.Image


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def expand_inputs(specs: Sequence[str], *, offline: bool = False) -> list[str]:
    """Files, folders (their images, sorted), globs, `-` and http(s) URLs -> a flat list in the
    order given. A missing path or an empty match is an InputError naming it."""
    if not specs:
        raise InputError("no input images given; pass files, folders, globs, URLs or - for stdin")
    out: list[str] = []
    for spec in specs:
        if spec == "-":
            out.append(spec)
        elif is_url(spec):
            if offline_mode(offline):
                raise InputError(f"{spec}: URLs cannot be read in offline mode; download the image first")
            out.append(spec)
        elif Path(spec).expanduser().is_dir():
            folder = Path(spec).expanduser()
            found = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise InputError(f"{spec}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.extend(found)
        elif Path(spec).expanduser().exists():
            out.append(spec)
        elif _GLOB_CHARS & set(spec):
            found = sorted(p for p in glob.glob(str(Path(spec).expanduser()), recursive=True) if Path(p).is_file())
            if not found:
                raise InputError(f"{spec}: no file matches this pattern")
            out.extend(found)
        else:
            raise InputError(f"{spec}: no such file or folder")
    return out


def read_regular_file(path: Path, what: str, *, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`. Devices (/dev/zero), FIFOs (a read that
    would wait forever), sockets and folders are refused without being opened for reading."""
    st = regular_file_stat(path, what)
    if st.st_size > max_bytes:
        raise InputError(f"{what}: {st.st_size:,} bytes is over the limit of {max_bytes >> 20} MiB")
    try:
        # O_NONBLOCK: should the path have been swapped for a FIFO since the stat, open() must not hang.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise InputError(f"{what}: not a regular file (a device, pipe or socket); save it to a file first")
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{what}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise InputError(f"{what}: larger than the limit of {max_bytes >> 20} MiB")
    return data


def _read_bytes(spec: str, *, offline: bool, stdin: io.BufferedIOBase | None = None) -> bytes:
    if spec == "-":
        data = (stdin or sys.stdin.buffer).read(MAX_IMAGE_BYTES + 1)
        if not data:
            raise InputError("-: nothing on standard input; pipe an image in (dl classify - < cat.jpg)")
        if len(data) > MAX_IMAGE_BYTES:
            raise InputError(f"-: more than {MAX_IMAGE_BYTES >> 20} MiB on standard input; pass a file")
        return data
    if is_url(spec):
        if offline_mode(offline):
            raise InputError(f"{spec}: URLs cannot be read in offline mode; download the image first")
        try:
            with urllib.request.urlopen(spec, timeout=30) as resp:
                data = resp.read(MAX_DOWNLOAD_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise NetworkError(f"{spec}: download failed ({getattr(exc, 'reason', exc)})") from None
        if len(data) > MAX_DOWNLOAD_BYTES:
            raise InputError(f"{spec}: larger than {MAX_DOWNLOAD_BYTES >> 20} MiB; download it and pass the file")
        return data
    return read_regular_file(Path(spec).expanduser(), spec, max_bytes=MAX_IMAGE_BYTES)


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit grey images to 0..255 (PIL's convert('L') would clip them)."""
    import numpy as np

    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        arr = arr / 257.0
    else:
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def normalize_mode(img: Image.Image, mode: str = "RGB") -> Image.Image:
    """Any PIL mode -> `mode` ("RGB" or "L"): transparency is composited on white, CMYK and
    palettes converted, 16-bit grey scaled rather than clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != mode:
        img = img.convert(mode)
    return img


def check_size(size: tuple[int, int], source: str, *, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse, from the header alone, an image too large or too thin to process within bounded
    memory (README "Limits")."""
    w, h = size
    if w < 1 or h < 1:
        raise InputError(f"{source}: {w}x{h} pixels is an empty image")
    if w * h > max_pixels:
        raise InputError(f"{source}: {w}x{h} pixels is over the limit of {max_pixels:,} pixels (a decompression "
                         "bomb?); resize it first")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise InputError(f"{source}: {w}x{h} pixels is more than {MAX_ASPECT} times longer than wide; crop it "
                         "to the part to look at")


def decode_image(data: bytes, source: str, *, mode: str = "RGB", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Bytes -> a fully decoded PIL image, EXIF orientation applied, converted to `mode`."""
    if not data:
        raise InputError(f"{source}: empty file (0 bytes), not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            check_size(img.size, source, max_pixels=max_pixels)
            img.load()
    except InputError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InputError(f"{source}: image is too large (a decompression bomb?); resize it first") from None
    except UnidentifiedImageError:
        raise InputError(f"{source}: not an image PIL can read (supported: JPEG, PNG, BMP, GIF, WebP, TIFF…)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{source}: image is truncated or corrupt ({exc}); re-export or re-download it") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not cost the whole image
        pass
    return normalize_mode(img, mode)


def load_image(spec: str, *, mode: str = "RGB", offline: bool = False,
               stdin: io.BufferedIOBase | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """One input (path, `-` or URL) -> a PIL image in `mode`. Errors are one-line InputErrors
    that name the input."""
    return decode_image(_read_bytes(spec, offline=offline, stdin=stdin), spec, mode=mode, max_pixels=max_pixels)


def iter_images(specs: Sequence[str], *, mode: str = "RGB", offline: bool = False,
                strict: bool = True, max_pixels: int = MAX_PIXELS) -> Iterator[LoadedImage | InputError]:
    """Expand and load inputs in order. With strict=False a bad input yields its error (for the
    caller to report and skip) instead of raising."""
    for spec in expand_inputs(specs, offline=offline):
        try:
            yield LoadedImage(spec, load_image(spec, mode=mode, offline=offline, max_pixels=max_pixels))
        except (InputError, NetworkError) as exc:
            if strict:
                raise
            yield InputError(exc.message)


def output_name(source: str, suffix: str, index: int) -> str:
    """A file name for the output made from `source` (stdin and URLs get stable names)."""
    return f"{_base_stem(source, index)}{suffix}"


def _base_stem(source: str, index: int) -> str:
    if source == "-":
        return "stdin"
    if is_url(source):
        stem = Path(source.split("?", 1)[0].rstrip("/")).stem
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or f"url{index}"
    return Path(source).stem or f"input{index}"


def output_stems(sources: Sequence[str]) -> list[str]:
    """One distinct output stem per input, in input order: `a/dog.jpg` and `b/dog.png` give `dog`
    and `dog-2`, so the outputs of one run never overwrite each other. Compared case-insensitively
    (macOS and Windows folders are), and a suffixed name never takes the plain stem of another
    input."""
    bases = [_base_stem(s, i) for i, s in enumerate(sources)]
    plain = {b.casefold() for b in bases}
    used: set[str] = set()
    out: list[str] = []
    for base in bases:
        name, k = base, 1
        while name.casefold() in used or (k > 1 and name.casefold() in plain):
            k += 1
            name = f"{base}-{k}"
        used.add(name.casefold())
        out.append(name)
    return out


def check_outputs(folder: Path, names: Iterable[str], *, force: bool, patterns: Iterable[str] = ()) -> Path:
    """Before any work: `folder` can hold outputs, and none of `names` (nor any file matching one
    of the glob `patterns`, already escaped by the caller) is there unless --force. The refusal
    names the first clash."""
    folder = check_output_dir(folder)
    if folder.is_dir():
        for name in names:
            check_writable(folder / name, force)
        if not force:
            for pattern in patterns:
                clash = next(iter(sorted(folder.glob(pattern))), None)
                if clash is not None:
                    raise InputError(f"{clash} already exists; pass --force to overwrite it or choose another folder")
    return folder


def save_image(img: Image.Image, path: str | Path, *, force: bool = False, **params: object) -> Path:
    """Save atomically; an existing file is kept unless force."""
    path = Path(path).expanduser()
    if not path.suffix:
        raise InputError(f"{path}: give the output a file extension (.png, .jpg)")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image extension {path.suffix!r}; use .png or .jpg")
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    with atomic_output(path, force) as tmp:
        img.save(tmp, format=fmt, **params)
    return path


# --- drawing -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def font(size: int = 12) -> ImageFont.ImageFont:
    """Pillow's default font at `size`, loaded once per size: a fresh font object measures and draws
    its first strings ~10x slower (FreeType's glyph cache is per object), which a video pays per frame."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size font
        return ImageFont.load_default()


def palette(n: int) -> list[tuple[int, int, int]]:
    """n distinct, saturated colours (golden-ratio hues), the same on every run."""
    import colorsys

    return [
        tuple(int(c * 255) for c in colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 0.95))  # type: ignore[misc]
        for i in range(n)
    ]


@functools.lru_cache(maxsize=2048)
def _text_tag(text: str, fill: tuple[int, int, int], size: int) -> tuple[Image.Image, int, int]:
    """`text` on its filled box, rendered once: (tag, x and y offsets of the tag from the text's
    origin). Videos draw the same few tags ("circle 0.99") on every frame; rendering text is most of
    the cost of annotating a frame."""
    f = font(size)
    left, top, right, bottom = f.getbbox(text)
    tag = Image.new("RGB", (right - left + 5, bottom - top + 5), fill)
    lum = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    ImageDraw.Draw(tag).text((2 - left, 2 - top), text, fill=(0, 0, 0) if lum > 140 else (255, 255, 255), font=f)
    return tag, left - 2, top - 2


@functools.lru_cache(maxsize=2048)
def _text_extent(text: str, size: int) -> tuple[int, int, int, int]:
    """The bounding box of `text` drawn at (0, 0) in the default font at `size` (measured once)."""
    return font(size).getbbox(text)


def text_with_background(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str,
                         fill: tuple[int, int, int], size: int = 12) -> None:
    """Text on a filled box of `fill`, black or white by luminance: readable on any background."""
    image = getattr(draw, "_image", None)
    if isinstance(image, Image.Image) and image.mode == "RGB":
        tag, dx, dy = _text_tag(text, tuple(int(c) for c in fill), size)  # type: ignore[arg-type]
        image.paste(tag, (round(xy[0]) + dx, round(xy[1]) + dy))
        return
    f = font(size)
    left, top, right, bottom = draw.textbbox(xy, text, font=f)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=fill)
    lum = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    draw.text(xy, text, fill=(0, 0, 0) if lum > 140 else (255, 255, 255), font=f)


def draw_boxes(img: Image.Image, boxes: Iterable[Sequence[float]], captions: Sequence[str],
               colors: Sequence[tuple[int, int, int]], width: int | None = None) -> Image.Image:
    """Boxes (xyxy pixels) with a caption on a coloured tag above each (inside when at the top)."""
    out = img.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = width or max(1, round(max(out.size) / 300))
    # Scaled to the image so that tags on a 128-px scene do not cover the objects they name.
    size = max(8, round(max(out.size) / 45))
    for box, caption, color in zip(boxes, captions, colors):
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
        left, top, right, bottom = _text_extent(caption, size)
        tx = max(2.0, min(x0 + 2, out.width - (right - left) - 4))  # keep the tag inside the image
        ty = y0 - size - 4 if y0 - size - 4 >= 0 else y0 + 2
        text_with_background(draw, (tx, ty), caption, color, size)
    return out


def make_grid(images: Sequence[Image.Image], ncols: int, *, pad: int = 2, scale: int = 1,
              background: tuple[int, int, int] = (255, 255, 255),
              corner_labels: Sequence[tuple[str, str]] | None = None) -> Image.Image:
    """Tile equally sized images in rows of `ncols`. `corner_labels[i] = (top_left, bottom_right)`
    writes two small labels on tile i (e.g. the true and the predicted digit)."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    w, h = images[0].size
    w, h = w * scale, h * scale
    nrows = (len(images) + ncols - 1) // ncols
    grid = Image.new("RGB", (ncols * (w + pad) + pad, nrows * (h + pad) + pad), background)
    draw = ImageDraw.Draw(grid)
    size = max(9, h // 4)
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        x, y = pad + c * (w + pad), pad + r * (h + pad)
        tile = im.convert("RGB")
        if scale != 1:
            tile = tile.resize((w, h), Image.NEAREST)
        grid.paste(tile, (x, y))
        if corner_labels is not None:
            top_left, bottom_right = corner_labels[i]
            if top_left:
                text_with_background(draw, (x + 2, y + 2), top_left, (40, 160, 40), size)
            if bottom_right:
                f = font(size)
                l, t, rr, b = draw.textbbox((0, 0), bottom_right, font=f)
                text_with_background(draw, (x + w - (rr - l) - 3, y + h - (b - t) - 4), bottom_right, (200, 40, 40), size)
    return grid


# Decoding a truncated file must fail, not silently pad with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def tensors_to_pil(imgs: Any) -> list[Any]:
    """(N, C, H, W) in [-1, 1] -> PIL images (L for grey, RGB for colour)."""
    import torch
    from PIL import Image

    arr = ((imgs.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    out = []
    for t in arr:
        if t.shape[0] == 1:
            out.append(Image.fromarray(t[0].numpy(), mode="L"))
        else:
            out.append(Image.fromarray(t.permute(1, 2, 0).contiguous().numpy(), mode="RGB"))
    return out
