"""Regenerates the digit samples in this folder (made for dlcli, CC0): DejaVu font glyphs
(Bitstream Vera licence; the fonts themselves are not included) and strokes drawn with PIL.

    python samples/digits/make_digits.py
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
FONTS = Path("/usr/share/fonts/truetype/dejavu")


def glyph(digit: str, font: str, size: int, canvas: tuple[int, int], bg, ink, mode: str = "RGB",
          offset: tuple[int, int] = (0, 0)) -> Image.Image:
    img = Image.new(mode, canvas, bg)
    d = ImageDraw.Draw(img)
    f = ImageFont.truetype(str(FONTS / font), size)
    l, t, r, b = d.textbbox((0, 0), digit, font=f)
    x = (canvas[0] - (r - l)) // 2 - l + offset[0]
    y = (canvas[1] - (b - t)) // 2 - t + offset[1]
    d.text((x, y), digit, font=f, fill=ink)
    return img


def paper(img: Image.Image, seed: int) -> Image.Image:
    """A photo-like look: uneven lighting, grain and a little blur."""
    rnd = random.Random(seed)
    w, h = img.size
    px = img.load()
    for yy in range(h):
        for xx in range(w):
            shade = int(25 * xx / w + 15 * yy / h) + rnd.randint(-12, 12)
            px[xx, yy] = tuple(max(0, min(255, c - shade)) for c in px[xx, yy])
    return img.filter(ImageFilter.GaussianBlur(1.2))


def main() -> None:
    glyph("2", "DejaVuSans-Bold.ttf", 80, (96, 96), "white", "black", "L").save(HERE / "digit_2_dejavu-sans-bold.png")
    paper(glyph("4", "DejaVuSerif-Bold.ttf", 70, (110, 90), (214, 208, 196), (40, 40, 60), offset=(12, 6)), 4).save(
        HERE / "digit_4_dejavu-serif-on-paper.png")
    glyph("5", "DejaVuSans-BoldOblique.ttf", 72, (90, 110), (20, 30, 80), (240, 240, 230)).save(
        HERE / "digit_5_oblique-light-on-dark.png")
    glyph("9", "DejaVuSansMono-Bold.ttf", 90, (100, 120), "white", (30, 30, 30), "RGB", offset=(-15, 0)).save(
        HERE / "digit_9_dejavu-mono-bold.png")

    # Strokes, as a person might draw them with a thick pen.
    img = Image.new("L", (120, 140), 255)
    d = ImageDraw.Draw(img)
    d.line([(25, 30), (95, 22), (88, 40), (60, 120)], fill=10, width=9, joint="curve")
    d.line([(45, 72), (85, 70)], fill=10, width=7)
    img.save(HERE / "digit_7_pen-strokes.png")

    img = Image.new("RGBA", (100, 130), (0, 0, 0, 0))  # a drawing on a transparent canvas
    d = ImageDraw.Draw(img)
    d.arc([25, 10, 75, 62], start=190, end=90, fill=(0, 0, 0, 255), width=8)
    d.arc([20, 58, 78, 118], start=270, end=160, fill=(0, 0, 0, 255), width=8)
    img.save(HERE / "digit_3_strokes-transparent.png")

    img = Image.new("L", (110, 130), 250)
    ImageDraw.Draw(img).ellipse([30, 15, 82, 115], outline=0, width=9)
    img.save(HERE / "digit_0_pen-ellipse.png")


if __name__ == "__main__":
    main()
