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
ROWS_PER_SHEET = 12
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


def _fit(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> str:
    """`text` cut with "..." in the middle to fit `width` pixels (file names keep both ends; Pillow's
    default font has no ellipsis character)."""
    if draw.textlength(text, font=font) <= width:
        return text
    keep = len(text)
    while keep > 4:
        keep -= 1
        cut = f"{text[:keep // 2]}...{text[len(text) - (keep - keep // 2):]}"
        if draw.textlength(cut, font=font) <= width:
            return cut
    return text[:3] + "..."


def draw(sheet: Sheet, rows: Sequence[Row], page: int, pages: int) -> Image.Image:
    """One page of `sheet`: its title, then each row's title over its tiles."""
    font, title_font = _font(12), _font(15)
    columns = max([min(len(r.tiles), MAX_TILES_PER_ROW) + (1 if r.more else 0) for r in rows] + [1])
    tile_w = THUMB + PAD
    tile_h = THUMB + PAD + CAPTION_LINES * LINE_HEIGHT
    width = PAD + columns * tile_w + PAD
    height = PAD + TITLE_HEIGHT + len(rows) * (TITLE_HEIGHT + tile_h + PAD) + PAD
    canvas = Image.new("RGB", (max(width, 480), height), BACKGROUND)
    pen = ImageDraw.Draw(canvas)
    heading = sheet.title + (f" (page {page} of {pages})" if pages > 1 else "")
    pen.text((PAD, PAD), _fit(heading, pen, title_font, canvas.width - 2 * PAD), fill=INK, font=title_font)
    y = PAD + TITLE_HEIGHT + PAD
    for row in rows:
        pen.text((PAD, y), _fit(row.title, pen, font, canvas.width - 2 * PAD), fill=MARKS.get(row.mark, INK)
                 if row.mark else INK, font=font)
        y += TITLE_HEIGHT
        x = PAD
        for tile in row.tiles[:MAX_TILES_PER_ROW]:
            _draw_tile(canvas, pen, tile, x, y, font)
            x += tile_w
        if row.more:
            pen.text((x + PAD, y + THUMB // 2), f"+{row.more} more", fill=INK, font=font)
        y += tile_h + PAD
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
