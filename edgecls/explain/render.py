"""PNG pictures of saliency maps: one image's overlay, and contact sheets of many (matplotlib, Agg).

Maps are drawn normalised (0 = no evidence, 1 = the map's peak) over the image in grey, with
one colour bar per figure; labels are shortened and wrapped so that no text overlaps.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.explain.occlusion import SaliencyMap
from edgecls.plotting import pyplot, save_png

# The file-name slug of the bench's plots: an internal name, imported here only.
from edgecls.reports.plots import slug

CMAP = "inferno"
ALPHA = 0.55
LABEL_CHARS = 22  # a label longer than this is cut: ImageNet names run to 40+
MAX_SHEET_ROWS = 24  # rows on one contact sheet; more go on the next page

__all__ = ["Panel", "overlay_png", "pillow_overlay", "pyplot", "sheet_png", "slug", "top3_lines"]


@dataclass
class Panel:
    """One cell of a contact sheet: an image, perhaps a map over it, a title and caption lines;
    or (with `snr`) a per-layer divergence chart."""

    image: Optional[np.ndarray] = None  # uint8 (H, W, C)
    saliency: Optional[np.ndarray] = None  # normalised (H, W)
    title: str = ""
    caption: Sequence[str] = ()
    # {"layers", "snr", "typical" (or None), "threshold" (dB), "first" (index or None)}
    snr: Optional[dict[str, Any]] = None
    highlight: bool = False  # a red frame: e.g. a wrong prediction


def short(label: str, width: int = LABEL_CHARS) -> str:
    label = label.split(",")[0].strip() or label  # "tabby, tabby cat" -> "tabby"
    return label if len(label) <= width else label[:width - 1] + "…"


def top3_lines(smap_or_top: Any) -> list[str]:
    top = smap_or_top.top if isinstance(smap_or_top, SaliencyMap) else smap_or_top
    return [f"{i + 1}. {short(c.label)} {c.score:.2f}" for i, c in enumerate(top[:3])]


def overlay_png(pixels: np.ndarray, smap: SaliencyMap, path: Path, title: str = "") -> str:
    """image | map over it (colour bar) | top-3 bars, written atomically to `path`. Without matplotlib
    (a device install) the image and the map over it, side by side, drawn with Pillow alone."""
    plt = pyplot()
    if plt is None:
        return pillow_overlay(pixels, smap.normalized(), path)
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.2, 1.1]})
    _image(axes[0], pixels)
    axes[0].set_title("input", fontsize=10)
    shown = _image(axes[1], pixels, smap.normalized())
    setting = ", ".join(f"{k} {v}" for k, v in smap.settings.items())
    axes[1].set_title(f"{smap.method} for '{short(smap.label)}'\n({setting})", fontsize=9)
    bar = figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    bar.set_label("relative importance", fontsize=8)
    top = smap.top[:3]
    names = [short(c.label) for c in top][::-1]
    scores = [c.score for c in top][::-1]
    colours = ["C3" if c.index == smap.target else "C0" for c in top][::-1]
    axes[2].barh(range(len(top)), scores, color=colours)
    axes[2].set_yticks(range(len(top)), names, fontsize=9)
    axes[2].set_xlim(0, 1)
    axes[2].set_xlabel("probability", fontsize=9)
    axes[2].set_title("top-3 (explained in red)", fontsize=10)
    for y, score in enumerate(scores):  # beside the bar, or inside it in white when the bar is long
        inside = score > 0.8
        axes[2].text(score - 0.02 if inside else score + 0.02, y, f"{score:.3f}", va="center", fontsize=8,
                     ha="right" if inside else "left", color="white" if inside else "black")
    if title:
        figure.suptitle(textwrap.shorten(title, 110), fontsize=10)
    figure.tight_layout()
    return save_png(plt, figure, path).name


PANEL_IN = 2.4  # inches a side of an image panel on a contact sheet
ROW_IN = 3.0  # inches a row of panels takes, its title and caption included
TOP_IN = 1.05  # the title and, under it, the colour bar (fixed inches: at the top whatever the sheet's height)
GROUP_GAP = 0.25  # between two images' groups of panels, in panel widths


def sheet_png(rows: Sequence[Sequence[Panel]], path: Path, title: str = "", column_titles: Sequence[str] = (),
              per_row: int = 1) -> str:
    """A grid of panels, one group of panels per image (`per_row` groups side by side, so that a sheet of
    many images is a page, not one tall column), written atomically to `path`. One colour bar for all the
    maps, horizontal under the title, where it is seen first on any sheet."""
    if not rows:
        raise EdgeclsError("nothing to draw: no rows for the contact sheet")
    plt = _plt()
    rows = list(rows)[:MAX_SHEET_ROWS]
    per_row = max(1, min(per_row, len(rows)))
    group = max(len(r) for r in rows)
    widths = [1.6 if any(len(r) > c and r[c].snr is not None for r in rows) else 1 for c in range(group)]
    ratios = [w for g in range(per_row) for w in (widths + ([GROUP_GAP] if g < per_row - 1 else []))]
    lines = -(-len(rows) // per_row)
    width = PANEL_IN * sum(ratios) + 0.6
    height = ROW_IN * lines + TOP_IN
    figure, axes = plt.subplots(lines, len(ratios), figsize=(width, height), squeeze=False,
                                gridspec_kw={"width_ratios": ratios})
    for ax in axes.flat:
        ax.axis("off")
    shown = None
    for n, row in enumerate(rows):
        line, first = divmod(n, per_row)
        for c, panel in enumerate(row):
            ax = axes[line][first * (group + 1) + c]
            ax.axis("on")
            if panel.snr is not None:
                _snr_chart(ax, panel.snr)
            else:
                drawn = _image(ax, panel.image, panel.saliency)
                shown = drawn if panel.saliency is not None else shown
                if panel.highlight:
                    for spine in ax.spines.values():
                        spine.set_visible(True)
                        spine.set_edgecolor("red")
                        spine.set_linewidth(2.5)
            heading = (column_titles[c] + "\n" if line == 0 and c < len(column_titles) else "") + panel.title
            ax.set_title(heading, fontsize=8)
            if panel.caption:
                ax.set_xlabel("\n".join(panel.caption), fontsize=7.5, loc="left")
    top = 1 - TOP_IN / height
    if title:
        figure.suptitle(textwrap.shorten(title, 160), fontsize=11, y=1 - 0.25 / height)
    figure.tight_layout(rect=(0, 0, 1, top))
    if shown is not None:
        bar_axes = figure.add_axes((0.3, 1 - 0.78 / height, 0.4, 0.13 / height))
        bar = figure.colorbar(shown, cax=bar_axes, orientation="horizontal")
        bar.set_label("relative importance (map peak = 1)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return save_png(plt, figure, path).name


# inferno at 0, 0.25, 0.5, 0.75, 1 (RGB): the Pillow fallback's colour map, close to matplotlib's
_INFERNO = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float32)
PILLOW_MIN_SIDE = 256  # the fallback's picture is scaled up to at least this many pixels a side


def pillow_overlay(pixels: np.ndarray, saliency: np.ndarray, path: Path) -> str:
    """The image and the normalised map over it (inferno, 55 % opaque), side by side, as a PNG made
    with Pillow alone: what a device without matplotlib writes."""
    from PIL import Image

    from edgecls.atomic import write_bytes_atomic

    stops = np.linspace(0, 1, len(_INFERNO))
    colours = np.stack([np.interp(saliency, stops, _INFERNO[:, c]) for c in range(3)], axis=-1)
    base = np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels
    blended = base.astype(np.float32) * (1 - ALPHA) + colours * ALPHA
    side = np.hstack([base.astype(np.float32), np.full((base.shape[0], 2, 3), 255.0), blended])
    picture = Image.fromarray(np.clip(np.rint(side), 0, 255).astype(np.uint8))
    factor = max(1, int(np.ceil(PILLOW_MIN_SIDE / min(base.shape[:2]))))
    picture = picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
    return path.name


def _plt() -> Any:
    plt = pyplot()
    if plt is None:
        raise EdgeclsError("drawing maps needs matplotlib: pip install matplotlib")
    return plt


def _image(ax: Any, pixels: np.ndarray, saliency: Optional[np.ndarray] = None) -> Any:
    grey = pixels.shape[-1] == 1
    base = pixels[..., 0] if grey else pixels
    ax.imshow(base, cmap="gray" if grey else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if saliency is None:
        return None
    return ax.imshow(saliency, cmap=CMAP, vmin=0, vmax=1, alpha=ALPHA, interpolation="bilinear")


def _snr_chart(ax: Any, snr: dict[str, Any]) -> None:
    layers, values = snr["layers"], [v if v is not None else np.nan for v in snr["snr"]]
    finite = [v for v in values if np.isfinite(v)]
    top = max(finite + [snr["threshold"]]) + 5
    plotted = [top if not np.isfinite(v) else v for v in values]  # identical (inf) drawn at the top
    xs = np.arange(len(layers))
    if snr.get("typical"):
        typical = [min(v, top) for v in snr["typical"]]
        ax.plot(xs, typical, color="grey", linewidth=1, label="typical")
        finite += typical
    ax.plot(xs, plotted, marker="o", markersize=3, color="C0", label="this image")
    ax.axhline(snr["threshold"], color="C3", linestyle="--", linewidth=1)
    ax.text(len(layers) - 1, snr["threshold"], f"{snr['threshold']:g} dB ", color="C3", fontsize=7, va="top",
            ha="right")
    first = snr.get("first")
    if first is not None:
        ax.plot([first], [plotted[first]], marker="o", markersize=7, color="C3")
    ax.set_xticks(xs, [short(name, 13) for name in layers], rotation=60, fontsize=6.5, ha="right")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel(f"SNR dB ({snr.get('mode') or 'int8'} vs float)", fontsize=7)
    ax.set_ylim(min(finite + [snr["threshold"]]) - 5, top + 2)
    ax.grid(alpha=0.3)
    if snr.get("typical"):
        ax.legend(fontsize=6, loc="lower left")
