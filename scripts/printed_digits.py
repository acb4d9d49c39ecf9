"""Write printed digits as PNG files: pictures a model trained on handwritten digits has never seen.

The README's field loop walks through with them (a camera would bring its own): the model meets them,
keeps the ones it is unsure of (`--collect`), a person labels those, the next run trains on them. Each
picture is a digit drawn in Pillow's own font (offline, no font files needed) at a random size,
place, slant and stroke width, white on black at 28x28 as the digits dataset is, with a little blur
and noise; its file name carries its digit, `printed-<digit>-<n>.png`, so that the walkthrough's
labelling step can be scripted. `--check DIR` also writes a labelled set of others (class sub-folders)
to measure the runs on.

    python scripts/printed_digits.py field/ --check field-check/ --count 300 --check-count 200

`--smoke` writes a few into a temporary folder and reads them back. Needs Pillow 10.1 or newer (its
scalable default font) and numpy.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIDE = 28
CANVAS = 56  # drawn at twice the size, then shrunk: smooth edges


def printed_digit(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One printed digit, uint8 (28, 28): white on black, its size, place, slant and stroke random."""
    font = ImageFont.load_default(size=int(rng.integers(30, 46)))
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    text = str(digit)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=1)
    x = (CANVAS - (right - left)) / 2 - left + rng.uniform(-5, 5)
    y = (CANVAS - (bottom - top)) / 2 - top + rng.uniform(-5, 5)
    draw.text((x, y), text, fill=255, font=font, stroke_width=int(rng.integers(0, 3)), stroke_fill=255)
    canvas = canvas.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR)
    small = canvas.resize((SIDE, SIDE), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    pixels = np.asarray(small, np.float32) + rng.normal(0, 6, (SIDE, SIDE))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write(folder: Path, count: int, rng: np.random.Generator, by_class: bool) -> None:
    for n in range(count):
        digit = n % 10
        target = folder / str(digit) if by_class else folder
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(printed_digit(digit, rng)).save(target / f"printed-{digit}-{n:04d}.png")


def smoke() -> None:
    """Twenty pictures of each kind into a temporary folder, read back: 28x28, a digit each, not blank."""
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        write(Path(folder, "flat"), 20, rng, by_class=False)
        write(Path(folder, "check"), 20, rng, by_class=True)
        files = sorted(Path(folder).rglob("*.png"))
        assert len(files) == 40 and {p.parent.name for p in files} == {"flat", *map(str, range(10))}
        for path in files:
            pixels = np.asarray(Image.open(path))
            assert pixels.shape == (SIDE, SIDE) and pixels.max() > 128, path
    print("smoke: 40 printed digits written and read back")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="write a few into a temporary folder and check them")
    parser.add_argument("out", type=Path, nargs="?", help="folder for the pictures (flat: the digit is in each "
                        "file's name)")
    parser.add_argument("--count", type=int, default=300, help="pictures in OUT (default 300, 30 of each digit)")
    parser.add_argument("--check", type=Path, help="also write a labelled set (a sub-folder per digit) here")
    parser.add_argument("--check-count", type=int, default=200, help="pictures in --check (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.smoke:
        smoke()
        return
    if args.out is None:
        parser.error("give the folder to write the pictures to (OUT)")
    for folder in filter(None, (args.out, args.check)):  # old and new pictures mixed would mislead a count
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            parser.error(f"{folder} is {'a file' if not folder.is_dir() else 'not empty'}: give a new folder")
    rng = np.random.default_rng(args.seed)
    write(args.out, args.count, rng, by_class=False)
    if args.check is not None:
        write(args.check, args.check_count, rng, by_class=True)
    print(f"wrote {args.count} printed digits to {args.out}"
          + (f" and {args.check_count} labelled ones to {args.check}" if args.check else ""))


if __name__ == "__main__":
    main()
