"""The data check's report: the JSON document, Markdown, the terminal summary (each finding with its
next step), the contact sheets, and `--review DIR` (links to the flagged files, a folder per
finding; the user's files are never moved or edited).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from PIL import Image

from edgecls import __version__, jsonio
from edgecls import duplicates as dup
from edgecls.artifacts import DATACHECK_FILE
from edgecls.atomic import WRITE_FAILURES, check_folder_writable, staged_dir, write_text_atomic
from edgecls.audit import facts as facts_module
from edgecls.audit.sheets import MAX_TILES_PER_ROW, THUMB, Row, Sheet, Tile, write_sheets
from edgecls.errors import EdgeclsError
from edgecls.files import read_capped
from edgecls.jsonio import MAX_JSON_BYTES, parse_json
from edgecls.provenance import created_timestamp
from edgecls.runtime.metrics import accuracy_text, correct_count

if TYPE_CHECKING:
    from edgecls.audit.job import Check

FORMAT = "edgecls.datacheck/1"
JSON_NAME = DATACHECK_FILE
MARKDOWN_NAME = "datacheck.md"
SHOWN = 50  # rows of a finding in the JSON/Markdown lists (counts are always complete)
TILES_PER_ROW = 6  # label candidates and outliers: tiles in a contact-sheet row
BACKBONE_EXAMPLE = "mobilenet_v1_0.5_160_quant.tflite"
SHEET_NAMES = ("duplicates", "near-misses", "labels", "outliers", "images")


# ---------------------------------------------------------------------- the document
def document(check: Check) -> dict[str, Any]:
    """Everything found, as JSON (datacheck.json; `--json` prints it)."""
    dataset, ids = check.dataset, check.ids
    names = dataset.class_names
    doc: dict[str, Any] = {
        "format": FORMAT, "created": created_timestamp(), "edgecls": __version__, "source": check.source,
        "run": str(check.run.run_dir) if check.run is not None else None, "backbone": check.backbone,
        "backbone_note": check.backbone_note or None,
        "images": int(len(dataset.labels)), "classes": list(names),
        "parts": check.parts_source or None,
        "duplicates": _duplicates_json(check),
        "label_issues": (check.label_issues.to_json(names, ids, SHOWN) if check.label_issues is not None
                         else None),
        "outliers": check.outliers.to_json(names, ids, SHOWN) if check.outliers is not None else None,
        "facts": check.facts.to_json(check.input_side, ids),
        "leakage": check.leakage.to_json(ids) if check.leakage is not None else None,
        "needs_backbone": None if check.backbone else needs_backbone_command(check),
        "notes": check.notes, "seconds": round(check.seconds, 1),
        # what `edgecls train` does with such groups (audit.job.train_groups), and what the run's split used
        "train_groups": check.train_groups, "run_dedupe": check.run_dedupe,
    }
    if doc["facts"]["files"] == 0:
        doc["facts"]["note"] = "not a folder of files: sizes, modes and EXIF do not apply"
    return doc


def needs_backbone_command(check: Check) -> str:
    target = str(check.run.run_dir) if check.run is not None else check.source
    return f"edgecls data check {target} --backbone {BACKBONE_EXAMPLE}"


def _member(check: Check, index: int) -> dict[str, Any]:
    row = {"image": check.ids[index], "class": check.dataset.class_names[int(check.dataset.labels[index])]}
    if check.parts is not None:
        row["part"] = check.parts[index] or None
    return row


def _duplicates_json(check: Check) -> dict[str, Any]:
    groups = []
    labels = check.dataset.labels
    for group in check.duplicates.groups:
        classes = sorted({check.dataset.class_names[int(labels[i])] for i in group.members})
        parts = sorted({check.parts[i] for i in group.members if check.parts[i]}) if check.parts is not None else []
        groups.append({
            "members": [_member(check, i) for i in group.members], "identical": group.identical,
            "across_classes": len(classes) > 1, "across_parts": len(parts) > 1, "oversized": group.oversized,
            "pairs": [{**p.to_json(), "a": check.ids[p.a], "b": check.ids[p.b]} for p in group.pairs]})
    rejected = [{**p.to_json(), "a": check.ids[p.a], "b": check.ids[p.b]} for p in check.duplicates.rejected[:10]]
    return {
        "rule": {"candidate_bits": dup.CANDIDATE_BITS, "pixel_confirm": dup.PIXEL_CONFIRM,
                 "embedding_confirm": dup.EMBEDDING_CONFIRM if check.backbone else None,
                 "embedding_candidate": dup.EMBEDDING_CANDIDATE if check.backbone else None,
                 "group_cap": dup.GROUP_CAP, "compared_at": dup.HASH_IMAGE_SIZE},
        "byte_identical": {"files": sum(len(c["copies"]) for c in check.copies),
                           "across_classes": sum(1 for c in check.copies if len(c["classes"]) > 1),
                           "groups": check.copies},
        "groups": groups, "count": len(groups),
        "images_in_groups": sum(len(g.members) for g in check.duplicates.groups),
        "across_classes": sum(1 for g in groups if g["across_classes"]),
        "across_parts": sum(1 for g in groups if g["across_parts"]),
        "oversized": sum(1 for g in groups if g["oversized"]),
        "candidates_looked_at": check.duplicates.candidates, "closest_rejected": rejected,
    }


# ---------------------------------------------------------------------- the terminal summary
def summary_lines(doc: dict[str, Any], report_dir: Path, files: list[Path], review: Optional[Path]) -> list[str]:
    """The findings, one line each with the next step; then where the report is."""
    lines = [f"Data check of {doc['source']}" + (f" (run {doc['run']})" if doc["run"] else "")
             + f": {_counted(doc['images'], 'image')}, {_counted(len(doc['classes']), 'class', 'classes')}"
             + (f", backbone {doc['backbone']}" if doc["backbone"] else "")
             + (f" ({doc['backbone_note']})" if doc["backbone_note"] else "")]
    for finding, count, detail, step in findings(doc):
        mark = "!" if count else "·"
        lines.append(f" {mark} {finding}: {detail}" + (f" → {step}" if count and step else ""))
    if doc["needs_backbone"]:
        lines.append(f"   label mistakes, outliers and look-alike duplicates need embeddings: {doc['needs_backbone']} "
                     "(any .tflite image classifier or feature extractor)")
    lines += [f"   note: {n}" for n in doc["notes"]]
    sheets = [f.name for f in files if f.suffix == ".png"]
    lines.append(f"Report: {report_dir}/ ({MARKDOWN_NAME}, {JSON_NAME}"
                 + (f", contact sheets {', '.join(sheets)}" if sheets else "") + ")")
    if review is not None:
        lines.append(f"Review folder: {review}/ (links to the flagged files, a folder per finding)")
    return lines


def findings(doc: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    """(finding, count, what was found, the next step) for the summary and the Markdown."""
    d, facts = doc["duplicates"], doc["facts"]
    out = []
    copies = d["byte_identical"]
    one = copies["files"] == 1
    out.append(("byte-identical files", copies["files"],
                _counted(copies["files"], "copy", "copies")
                + (f", {copies['across_classes']} filed under two classes" if copies["across_classes"] else "")
                + (f" (train drops {'it' if one else 'them'})" if copies["files"] else ""),
                f"delete the {'copy' if one else 'copies'}; a picture filed under two classes is kept under the first "
                "by train: file it once"))
    conflict = f", {d['across_classes']} across classes (label conflicts)" if d["across_classes"] else ""
    parts = f", {d['across_parts']} across the split's parts" if d["across_parts"] else ""
    big = (f", {d['oversized']} larger than {d['rule']['group_cap']} (not kept together by train)"
           if d["oversized"] else "")
    keeps = doc.get("train_groups", "kept")
    group_step = {
        "kept": "look at duplicates*.png; keep one picture of each group, or let train keep each group on one side "
                "of its split (--dedupe near, the default for folders)",
        "not_by_default": "look at duplicates*.png; keep one picture of each group, or train with --dedupe near to "
                          "keep each group on one side of its split (built-in and IDX data keep the plain split by "
                          "default)",
        "not_used": "look at duplicates*.png before removing any: groups this widespread are look-alikes more than "
                    "copies (see the note), and train does not keep them together"}[keeps]
    out.append(("near-duplicate groups", d["count"],
                f"{_counted(d['count'], 'group')} of {_counted(d['images_in_groups'], 'image')}{conflict}{parts}{big}"
                if d["count"] else "none", group_step))
    leak = doc["leakage"]
    if leak is not None:
        by_parts = ", ".join(f"{k} {v}" for k, v in leak["by_parts"].items())
        detail = (f"{_counted(leak['groups'], 'group spans', 'groups span')} parts ({by_parts})" if leak["groups"]
                  else "no group spans the parts")
        if leak["leaked_test_images"]:
            leaked = _counted(len(leak["leaked_test_images"]), "test image has", "test images have")
            detail += f"; {leaked} a near-duplicate in train or val"
        for row in leak["accuracy"] if leak["leaked_test_images"] else []:  # with its count and 95 % interval
            n, kept = row["test_images"], row["without_leaked"]
            detail += (f"; {row['model']}: test accuracy {accuracy_text(correct_count(row['accuracy'], n), n)}, "
                       "without the leaked images "
                       f"{accuracy_text(correct_count(row['accuracy_without_leaked'], kept), kept)}"
                       if row["accuracy_without_leaked"] is not None else "")
        out.append(("leakage across the split", leak["groups"], detail, _leakage_step(doc)))
    labels = doc["label_issues"]
    if labels is not None:
        out.append(("label-issue candidates", labels["count"],
                    f"{labels['count']} (out-of-fold accuracy {labels['out_of_fold_accuracy']:.3f})",
                    "look at labels*.png (given → suggested class); move a mislabelled file to its class folder"))
    outliers = doc["outliers"]
    if outliers is not None:
        out.append(("outliers", outliers["count"], f"{outliers['count']} far from every class",
                    "look at outliers*.png; remove pictures of none of the classes"))
    balance = facts["class_counts"]
    imbalance = facts["imbalance"]
    out.append(("class balance", int(imbalance >= facts_module.IMBALANCE),
                ", ".join(f"{k} {v}" for k, v in balance.items()) + f" (largest/smallest {imbalance:.1f})",
                "collect more of the small classes; accuracy alone flatters a model that favours the large one"))
    odd = [("unreadable", len(facts["unreadable"])), ("tiny (< 32 px)", len(facts["tiny"])),
           ("extreme aspect (≥ 3:1)", len(facts["extreme_aspect"])),
           ("grayscale files in an RGB set", len(facts["grayscale_files"])),
           ("gray pictures stored as colour", len(facts["gray_pictures"]))]
    odd_count = sum(n for _, n in odd)
    rotated = len(facts["exif_rotated"])
    detail = ", ".join(f"{n} {what}" for what, n in odd if n) or "none odd"
    if facts["files"]:
        w, h = facts["width"], facts["height"]
        if w and h:
            detail += f"; sizes {int(w['min'])}x{int(h['min'])} to {int(w['max'])}x{int(h['max'])} (median " \
                      f"{int(w['median'])}x{int(h['median'])}); modes " + \
                      ", ".join(f"{k} {v}" for k, v in facts["modes"].items())
        if rotated:
            detail += f"; {rotated} EXIF-rotated (turned upright when decoded, in training as on the device)"
        small = facts.get("smaller_than_input")
        if small and small["count"]:
            detail += f"; {small['count']} smaller than the model's {small['side']} px input (upscaled)"
    out.append(("image files", odd_count, detail,
                "look at images*.png; re-export or remove unreadable, tiny and stretched files"))
    return out


def _counted(n: int, singular: str, plural: Optional[str] = None) -> str:
    """'1 copy', '2 copies': a count with its noun (phrase) in the right number."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def _leakage_step(doc: dict[str, Any]) -> str:
    """What to do about groups across the split, as train really treats them (doc["train_groups"])."""
    if (doc.get("parts") or "").startswith("the folder's own parts"):
        return "a folder's own train/val/test is never re-split: move the copies yourself"
    keeps, used = doc.get("train_groups", "kept"), doc.get("run_dedupe")
    if keeps == "not_used":
        return ("no retrain changes this: train makes the plain split for this data (groups this widespread are "
                "look-alikes more than copies, see the note); the accuracy without them shows how much the "
                "look-alikes help the test figure")
    if keeps == "not_by_default":
        return ("retrain with --dedupe near: train then keeps near-duplicate groups on one side of its split "
                "(built-in and IDX data keep the plain split by default)")
    if used in ("off", "exact"):
        return f"retrain with --dedupe near (the default for folders; this run's split used --dedupe {used})"
    return "retrain: edgecls train keeps near-duplicate groups on one side of a split it makes (--dedupe near)"


# ---------------------------------------------------------------------- Markdown
def markdown(doc: dict[str, Any], files: list[Path]) -> str:
    lines = [f"# Data check of {doc['source']}", "",
             f"{doc['images']} images, classes: {', '.join(doc['classes'])}."
             + (f" Run: {doc['run']}." if doc["run"] else "")
             + (f" Backbone: {doc['backbone']}" + (f" ({doc['backbone_note']})" if doc["backbone_note"] else "") + "."
                if doc["backbone"] else " No backbone: label issues and outliers were not looked for "
                f"(`{doc['needs_backbone']}`)."),
             f"Created {doc['created']} by edgecls {doc['edgecls']} in {doc['seconds']} s.", "",
             "| finding | count | found | next step |", "| --- | --- | --- | --- |"]
    for finding, count, detail, step in findings(doc):
        lines.append(f"| {finding} | {count} | {_cell(detail)} | {_cell(step) if count else ''} |")
    d = doc["duplicates"]
    lines += ["", "## Near-duplicates", "",
              f"Rule: a pair is a candidate when its perceptual hashes (crops included) differ in at most "
              f"{d['rule']['candidate_bits']} of 64 bits"
              + (f" or its embeddings' cosine is at least {d['rule']['embedding_candidate']}"
                 if doc["backbone"] else "")
              + f"; it is confirmed by aligned pixels (normalised cross-correlation ≥ {d['rule']['pixel_confirm']})"
              + (f" or, for a hash candidate, by the embeddings (≥ {d['rule']['embedding_confirm']})"
                 if doc["backbone"] else "")
              + f". Groups join confirmed pairs only; {d['candidates_looked_at']} candidate pairs were looked at.", ""]
    for n, group in enumerate(d["groups"][:SHOWN], 1):
        flags = [f for f, on in (("label conflict", group["across_classes"]), ("across parts", group["across_parts"]),
                                 ("oversized", group["oversized"]), ("identical pixels", group["identical"])) if on]
        members = ", ".join(f"`{m['image']}` ({m['class']}" + (f", {m['part']}" if m.get("part") else "") + ")"
                            for m in group["members"])
        lines.append(f"{n}. {members}" + (f" — {', '.join(flags)}" if flags else ""))
    if not d["groups"]:
        lines.append("None.")
    if d["byte_identical"]["groups"]:
        lines += ["", "Byte-identical files (train keeps the first, drops the copies):", ""]
        for row in d["byte_identical"]["groups"][:SHOWN]:
            lines.append(f"- `{row['kept']}` = " + ", ".join(f"`{c}`" for c in row["copies"])
                         + (" — **filed under two classes**" if len(row["classes"]) > 1 else ""))
    for title, key, columns in (("Label-issue candidates", "label_issues",
                                 ("image", "given", "suggested", "p_given", "p_suggested")),
                                ("Outliers", "outliers", ("image", "nearest_class", "score"))):
        section = doc[key]
        if section is None:
            continue
        rows = section["candidates"] if key == "label_issues" else section["images"]
        lines += ["", f"## {title}", "", section["method"] + f". {section['count']} flagged.", ""]
        if rows:
            lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
            lines += ["| " + " | ".join(_cell(str(r[c])) for c in columns) + " |" for r in rows]
    sheets = [f.name for f in files if f.suffix == ".png"]
    if sheets:
        lines += ["", "## Contact sheets", ""] + [f"![{name}]({name})" for name in sheets]
    if doc["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    from edgecls.reports.report import md_cell  # one Markdown cell for every report

    return md_cell(text)


# ---------------------------------------------------------------------- writing
def write(check: Check, doc: dict[str, Any], folder: Path, max_pages: int) -> list[Path]:
    """Contact sheets, datacheck.md and datacheck.json in `folder`, each file atomic."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeclsError(f"cannot write to --report {folder}: {exc.strerror or exc}") from None
    for stale in _earlier_sheets(folder):  # pages of an earlier check into this folder (only those it wrote)
        stale.unlink(missing_ok=True)
    files: list[Path] = []
    for sheet in contact_sheets(check, doc):
        files += write_sheets(sheet, folder, max_pages if sheet.name != "near-misses" else min(1, max_pages))
    doc["contact_sheets"] = [f.name for f in files]
    files.append(write_text_atomic(folder / MARKDOWN_NAME, markdown(doc, files)))
    files.append(write_text_atomic(folder / JSON_NAME, jsonio.dumps(doc, indent=1, default=_plain) + "\n"))
    return files


def _earlier_sheets(folder: Path) -> list[Path]:
    """The contact sheets an earlier datacheck.json in `folder` lists (a user's own files are never touched)."""
    try:
        names = parse_json(read_capped(folder / JSON_NAME, MAX_JSON_BYTES)).get("contact_sheets") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [folder / n for n in names if isinstance(n, str) and Path(n).name == n and n.endswith(".png")
            and n.startswith(SHEET_NAMES)]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


class _Pictures:
    """Thumbnails of dataset images (and of dropped files): from the files where there are files, decoded
    by the runtime's load_image at the picture's own aspect ratio; else the arrays."""

    def __init__(self, check: Check):
        self.check = check
        self.sizes = {f.path: (f.width, f.height) for f in check.facts.readable}

    def of_index(self, index: int):
        dataset = self.check.dataset
        if dataset.paths is None:
            return lambda: _from_array(np.asarray(dataset.images[index]))
        return self.of_file(dataset.paths[index])

    def of_file(self, relative: str):
        def load() -> Optional[Image.Image]:
            from edgecls.runtime.preprocess import ImageError, load_image

            root = Path(self.check.dataset.source)
            w, h = self.sizes.get(relative) or _header_size(root, relative)
            scale = min(1.0, THUMB / max(1, w, h))
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            try:
                return Image.fromarray(load_image(root / relative, size, "rgb"))
            except (ImageError, OSError):
                return None

        return load


def _header_size(root: Path, relative: str) -> tuple[int, int]:
    """(width, height) upright of a file the facts do not list (a dropped byte-identical copy)."""
    found = facts_module.file_facts(root, relative)
    return (found.width, found.height) if found.width and found.height else (THUMB, THUMB)


def _from_array(pixels: np.ndarray) -> Image.Image:
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    scale = max(1, THUMB // max(image.size))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST).convert("RGB")


def _short(image_id: Any) -> str:
    return Path(str(image_id)).name if not isinstance(image_id, int) else f"#{image_id}"


def contact_sheets(check: Check, doc: dict[str, Any]) -> list[Sheet]:
    pictures = _Pictures(check)
    names, labels = check.dataset.class_names, check.dataset.labels
    part = (lambda i: f" · {check.parts[i]}" if check.parts is not None and check.parts[i] else "")
    sheets = []
    groups = Sheet("duplicates", f"Near-duplicate groups of {check.source} (each group side by side; the title: "
                                 "group number, then the most alike pair's aligned pixels, hash distance, embedding)")
    by_pair = {}
    for n, group in enumerate(check.duplicates.groups, 1):
        for p in group.pairs:
            by_pair.setdefault(p.a, p)
            by_pair.setdefault(p.b, p)
        classes = {names[int(labels[i])] for i in group.members}
        parts = {check.parts[i] for i in group.members if check.parts is not None and check.parts[i]}
        best = max(group.pairs, key=lambda p: p.pixels) if group.pairs else None
        signals = (f"px {best.pixels:.3f}" + (f", {best.hash_bits} bits" if best.hash_bits is not None else "")
                   + (f", emb {best.embedding:.2f}" if best.embedding is not None else "")) if best else ""
        mark = "conflict" if len(classes) > 1 else "leak" if len(parts) > 1 else None
        flags = (["LABEL CONFLICT " + "/".join(sorted(classes))] if len(classes) > 1 else []) + \
            (["across " + "/".join(sorted(parts))] if len(parts) > 1 else []) + \
            ([f"{len(group.members)} images, over {dup.GROUP_CAP}: not kept together"] if group.oversized else [])
        title = f"{n}: " + "; ".join(flags + [signals])
        tiles = [Tile(pictures.of_index(i), [names[int(labels[i])] + part(i), _short(check.ids[i])], mark)
                 for i in group.members[:MAX_TILES_PER_ROW]]
        groups.rows.append(Row(title, tiles, mark, max(0, len(group.members) - MAX_TILES_PER_ROW)))
    for row in check.copies:
        if len(row["classes"]) > 1:
            tiles = [Tile(pictures.of_file(p), [str(Path(p).parts[0]), _short(p)], "conflict")
                     for p in [row["kept"], *row["copies"]][:MAX_TILES_PER_ROW]]
            groups.rows.append(Row("SAME FILE in " + "/".join(row["classes"]) + " (train keeps the first)", tiles,
                                   "conflict"))
    sheets.append(groups)
    if check.duplicates.rejected:
        near = Sheet("near-misses", "Closest candidate pairs the pixel check turned down (not duplicates): aligned "
                                    "pixels, hash distance, embedding")
        for p in check.duplicates.rejected[:12]:
            near.rows.append(Row(f"px {p.pixels:.3f} (< {dup.PIXEL_CONFIRM}), {p.hash_bits} bits"
                                 + (f", emb {p.embedding:.2f}" if p.embedding is not None else ""),
                                 [Tile(pictures.of_index(i), [names[int(labels[i])], _short(check.ids[i])])
                                  for i in (p.a, p.b)]))
        sheets.append(near)
    issues = check.label_issues
    if issues is not None and len(issues.candidates):
        sheets.append(_ranked_sheet(
            "labels", "Label-issue candidates, most suspicious first (given -> suggested class)", "candidates",
            issues.candidates, pictures,
            lambda i: [f"{names[int(labels[i])]} -> {names[int(issues.suggested[i])]}",
                       f"p {issues.probabilities[i, issues.suggested[i]]:.2f} vs "
                       f"{issues.probabilities[i, labels[i]]:.2f}",
                       _short(check.ids[i])]))
    outliers = check.outliers
    if outliers is not None and len(outliers.flagged):
        sheets.append(_ranked_sheet(
            "outliers", "Outliers: far from every class, most distant first", "outliers", outliers.flagged, pictures,
            lambda i: [f"{names[int(labels[i])]} (nearest {names[int(outliers.nearest_class[i])]})",
                       f"score {outliers.scores[i]:.3f}", _short(check.ids[i])]))
    sheets.append(_odd_images_sheet(check, pictures))
    return sheets


def _ranked_sheet(name: str, title: str, what: str, indices: np.ndarray, pictures: _Pictures,
                  captions: Callable[[int], list[str]]) -> Sheet:
    """A sheet of dataset images in their order, TILES_PER_ROW a row, each with its captions."""
    sheet = Sheet(name, title)
    for start in range(0, len(indices), TILES_PER_ROW):
        chunk = [int(i) for i in indices[start:start + TILES_PER_ROW]]
        sheet.rows.append(Row(f"{what} {start + 1}-{start + len(chunk)}",
                              [Tile(pictures.of_index(i), captions(i), "note") for i in chunk]))
    return sheet


def _odd_images_sheet(check: Check, pictures: _Pictures) -> Sheet:
    facts = check.facts
    sheet = Sheet("images", "Odd image files: tiny, stretched, grayscale in an RGB set")
    kinds = [("tiny (< 32 px)", facts.tiny()), ("aspect 3:1 or more", facts.extreme_aspect())]
    if facts.rgb_set:
        kinds.append(("grayscale file", facts.grayscale_files()))
    for title, found in kinds:
        for start in range(0, len(found), TILES_PER_ROW):
            chunk = found[start:start + TILES_PER_ROW]
            tiles = [Tile(pictures.of_file(f.path), [f"{f.width}x{f.height} {f.mode}", _short(f.path)]) for f in chunk]
            sheet.rows.append(Row(f"{title}: {len(found)}" + (f" ({start + 1}-{start + len(chunk)})"
                                                              if len(found) > TILES_PER_ROW else ""), tiles))
    gray = facts.gray_in_rgb
    if gray and check.dataset.paths is not None:
        chunk = gray[:TILES_PER_ROW]
        sheet.rows.append(Row(f"gray, stored as colour: {len(gray)}",
                              [Tile(pictures.of_index(i), [_short(check.ids[i])]) for i in chunk]))
    return sheet


# ---------------------------------------------------------------------- --review DIR
def check_review_dir(folder: Path) -> None:
    """--review must name a new (or empty) folder: links are added, nothing is ever replaced."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise EdgeclsError(f"--review {folder} exists and is not an empty folder: name a new folder")
    check_folder_writable("--review", folder, folder.parent if not folder.exists() else folder)


def link_review(check: Check, folder: Path) -> Path:
    """Links to the flagged files, a folder per finding (symbolic links, hard links where symbolic
    ones cannot be made). Only for a folder of files. Made in a staging folder renamed into place at
    the end: a full disk or a Ctrl-C / SIGTERM part-way leaves no half-made review folder."""
    dataset = check.dataset
    if dataset.paths is None:
        raise EdgeclsError(f"--review needs a folder of image files; {check.source} is not one")
    root = Path(dataset.source).resolve()
    names, labels = dataset.class_names, dataset.labels

    staging: list[Path] = []  # the folder being filled (staged_dir's)

    def link(relative: str, where: str, prefix: str = "") -> None:
        target_dir = staging[0] / where
        target_dir.mkdir(parents=True, exist_ok=True)
        name = (prefix + "-" if prefix else "") + relative.replace(os.sep, "__")
        link_path = target_dir / name
        source = root / relative
        try:
            os.symlink(source, link_path)
        except OSError as first:
            if first.errno in WRITE_FAILURES:  # a full disk: staged_dir names the folder and leaves nothing
                raise
            try:  # a file system without symbolic links
                os.link(source, link_path)
            except OSError as exc:
                cause = first if exc.errno == errno.EXDEV else exc  # another disk: the symbolic link's reason
                raise EdgeclsError(f"cannot link {source} into --review {folder}: {cause.strerror or cause}",
                                   exit_code=1) from None

    with staged_dir(folder, force=folder.is_dir()) as tmp:  # force: the empty folder check_review_dir allowed
        staging.append(tmp)
        _link_findings(check, link, dataset, root, names, labels)
    return folder


def _link_findings(check: Check, link: Callable[..., None], dataset: Any, root: Path, names: list[str],
                   labels: Any) -> None:
    for n, group in enumerate(check.duplicates.groups, 1):
        conflict = len({int(labels[i]) for i in group.members}) > 1
        for i in group.members:
            link(dataset.paths[i], f"near-duplicates/group-{n:03d}" + ("-label-conflict" if conflict else ""))
    for n, row in enumerate(check.copies, 1):
        for p in [row["kept"], *row["copies"]]:
            link(p, f"byte-identical/group-{n:03d}" + ("-label-conflict" if len(row["classes"]) > 1 else ""))
    if check.leakage is not None:
        for i in check.leakage.leaked_test:
            link(dataset.paths[i], "leaked-test-images")
    if check.label_issues is not None:
        for rank, i in enumerate(check.label_issues.candidates, 1):
            link(dataset.paths[i], "label-issues",
                 f"{rank:03d}-{names[int(labels[i])]}-to-{names[int(check.label_issues.suggested[i])]}")
    if check.outliers is not None:
        for rank, i in enumerate(check.outliers.flagged, 1):
            link(dataset.paths[i], "outliers", f"{rank:03d}")
    facts = check.facts
    for where, found in (("tiny", facts.tiny()), ("extreme-aspect", facts.extreme_aspect()),
                         ("grayscale", facts.grayscale_files() if facts.rgb_set else []),
                         ("exif-rotated", facts.rotated())):
        for f in found:
            link(f.path, f"images/{where}")
    for p, _ in facts.unreadable:
        if (root / p).is_file():
            link(p, "images/unreadable")
