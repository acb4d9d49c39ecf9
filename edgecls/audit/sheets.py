"""Contact sheets drawn with Pillow (a device install has no matplotlib): rows of thumbnails with
captions, so a person can judge a finding at a glance (a near-duplicate group side by side; a label
candidate with its given and suggested class).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from PIL import Image, ImageDraw, ImageFont

from edgecls.atomic import write_bytes_atomic

THUMB = 150  # px: the longer side of a thumbnail
PAD = 8
CAPTION_LINES = 3
LINE_HEIGHT = 14
TITLE_HEIGHT = 20
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MARKS = {"conflict": (200, 30, 30), "leak": (220, 120, 0), "note": (40, 90, 200), None: (200, 200, 200)}
ROWS_PER_SHEET = 24  # rows (groups, or runs of tiles) a page; small ones share a line
MAX_TILES_PER_ROW = 8  # a larger group shows its first members and says how many more


@dataclass
class Tile:
    picture: Callable[[], Optional[Image.Image]]  # drawn only when the sheet is (None: unreadable)
    lines: list[str]
    mark: Optional[str] = None  # a key of MARKS: the frame's colour


@dataclass
class Row:
    title: str
    tiles: list[Tile]
    mark: Optional[str] = None
    more: int = 0  # members not shown


@dataclass
class Sheet:
    name: str  # file stem, e.g. "duplicates"
    title: str
    rows: list[Row] = field(default_factory=list)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


def _fit(text: str, draw: ImageDraw.ImageDraw, font, width: int, middle: bool = True) -> str:
    """`text` cut with "..." to fit `width` pixels: in the middle (file names keep both ends), or at
    the end (titles say the most important first). Pillow's default font has no ellipsis character."""
    if draw.textlength(text, font=font) <= width:
        return text
    keep = len(text)
    while keep > 4:
        keep -= 1
        cut = f"{text[:keep // 2]}...{text[len(text) - (keep - keep // 2):]}" if middle else f"{text[:keep]}..."
        if draw.textlength(cut, font=font) <= width:
            return cut
    return text[:3] + "..."


def _blocks(rows: Sequence[Row]) -> list[list[Row]]:
    """Rows flowed into lines of at most MAX_TILES_PER_ROW + 1 tiles: small groups sit side by side."""
    lines: list[list[Row]] = []
    used = MAX_TILES_PER_ROW + 2  # start a new line at once
    for row in rows:
        width = _width(row)
        if used + width > MAX_TILES_PER_ROW + 1:
            lines.append([])
            used = 0
        lines[-1].append(row)
        used += width
    return lines


def _width(row: Row) -> int:
    """A row's width in tiles (a gap of a third of a tile is added between blocks by `draw`)."""
    return max(1, min(len(row.tiles), MAX_TILES_PER_ROW) + (1 if row.more else 0))


def draw(sheet: Sheet, rows: Sequence[Row], page: int, pages: int) -> Image.Image:
    """One page of `sheet`: its title, then each row (a title over its tiles), flowed left to right."""
    font, title_font = _font(12), _font(15)
    tile_w = THUMB + PAD
    gap = tile_w // 3
    tile_h = THUMB + PAD + CAPTION_LINES * LINE_HEIGHT
    lines = _blocks(rows)
    widest = max((sum(_width(r) * tile_w + gap for r in line) - gap for line in lines), default=tile_w)
    width = max(PAD + widest + PAD, 480)
    height = PAD + TITLE_HEIGHT + PAD + len(lines) * (TITLE_HEIGHT + tile_h + PAD) + PAD
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    pen = ImageDraw.Draw(canvas)
    heading = sheet.title + (f" (page {page} of {pages})" if pages > 1 else "")
    pen.text((PAD, PAD), _fit(heading, pen, title_font, width - 2 * PAD), fill=INK, font=title_font)
    y = PAD + TITLE_HEIGHT + PAD
    for line in lines:
        x = PAD
        for row in line:
            block = _width(row) * tile_w
            pen.text((x, y), _fit(row.title, pen, font, block - PAD, middle=False),
                     fill=MARKS[row.mark] if row.mark else INK, font=font)
            tx = x
            for tile in row.tiles[:MAX_TILES_PER_ROW]:
                _draw_tile(canvas, pen, tile, tx, y + TITLE_HEIGHT, font)
                tx += tile_w
            if row.more:
                pen.text((tx + PAD, y + TITLE_HEIGHT + THUMB // 2), f"+{row.more} more", fill=INK, font=font)
            x += block + gap
        y += TITLE_HEIGHT + tile_h + PAD
    return canvas


def _draw_tile(canvas: Image.Image, pen: ImageDraw.ImageDraw, tile: Tile, x: int, y: int, font) -> None:
    picture = tile.picture()
    frame = MARKS.get(tile.mark, MARKS[None])
    pen.rectangle((x - 2, y - 2, x + THUMB + 1, y + THUMB + 1), outline=frame, width=2)
    if picture is None:
        pen.text((x + 10, y + THUMB // 2), "unreadable", fill=INK, font=font)
    else:
        picture = picture.copy()
        picture.thumbnail((THUMB, THUMB))
        canvas.paste(picture, (x + (THUMB - picture.width) // 2, y + (THUMB - picture.height) // 2))
    for n, line in enumerate(tile.lines[:CAPTION_LINES]):
        pen.text((x, y + THUMB + 4 + n * LINE_HEIGHT), _fit(line, pen, font, THUMB), fill=INK, font=font)


def write_sheets(sheet: Sheet, folder: Path, max_pages: int) -> list[Path]:
    """`sheet` as PNG pages in `folder` (NAME.png, or NAME-1.png, NAME-2.png, ...), at most
    `max_pages`; each written atomically. Returns the files written."""
    if not sheet.rows:
        return []
    pages = [sheet.rows[i:i + ROWS_PER_SHEET] for i in range(0, len(sheet.rows), ROWS_PER_SHEET)][:max_pages]
    written = []
    for number, rows in enumerate(pages, 1):
        name = f"{sheet.name}.png" if len(pages) == 1 else f"{sheet.name}-{number}.png"
        buffer = io.BytesIO()
        draw(sheet, rows, number, len(pages)).save(buffer, "PNG", optimize=True)
        written.append(write_bytes_atomic(folder / name, buffer.getvalue()))
    return written
