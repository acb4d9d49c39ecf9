"""A run trained again with new images: `edgecls train --from RUN --add inbox/ [--add more/]`.

The new run stays comparable with RUN: it takes RUN's options (its config.toml, as --config reads it;
options given on the command line win, but none that would change the held-out images) and RUN's
validation and test images — the very images, checked by content digest. The added images join the
training split only:

    RUN's data (and the folders RUN itself added) and its split, checked against the data's
    fingerprint -> each --add folder: sub-folders named as RUN's classes (the labelled images) and
    `unknown/` (images of none of them) -> decoded at RUN's size and colour, by the runtime's
    load_image -> left out, and counted: an image identical to one of RUN's (or to one added before
    it), and a near-duplicate of one of RUN's validation or test images (edgecls.duplicates'
    rule: perceptual hashes close, confirmed by the aligned pixels; for built-in and IDX data, whose
    small glyphs hash alike, identical pixels only: see `mode_for`) -> train = RUN's train + the rest

`unknown/` images are no class: they are negatives for the unknown answer's rule, as --unknown-data's
images are (`train --backbone` calibrates with them at once; `edgecls export` of a Keras run does).

The new run's config.toml records `from_run` and `add` — every folder added since the original data,
in order, so that its dataset reloads as one list (the data, then each folder) and `train --config`
of it trains it again — and its split.json what was added and left out (`from`). numpy and Pillow
only: the .tflite backbone route runs this on a device.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.artifacts import RunRecord
from edgecls.data import Dataset, Split, image_digests, load_dataset, load_split, part_digest
from edgecls.errors import EdgeclsError, first_line
from edgecls.files import sha256_of
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime.preprocess import ImageError, is_image_file, load_image
from edgecls.runtime.sources import MAX_UNKNOWN, walk_images
from edgecls.text import printable

NEGATIVES = "unknown"  # the sub-folder of an --add folder that holds images of none of the classes
SHOWN = 3  # left-out files named in the log line (all of them are in split.json)


@dataclass
class Added:
    """What --add folders hold: the labelled images (decoded, in folder then class order), each file's
    content digest and label, the negatives' files, and the files that could not be decoded."""

    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray
    files: list[str]  # absolute
    keys: list[str]  # "<path in its folder>|<label>|<file SHA-256>": the fingerprint's part
    digests: list[str]  # each file's SHA-256
    negatives: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    folders: tuple[str, ...] = ()  # the --add folders read, in order


def add_folders(folders: Sequence[str | os.PathLike]) -> list[str]:
    """--add folders as absolute paths, in order, each once; a one-line error for one that is no folder."""
    found: list[str] = []
    for folder in folders:
        path = Path(folder).expanduser()
        if not path.is_dir():
            what = "no such folder" if not path.exists() else "not a folder"
            raise EdgeclsError(f"--add {printable(str(folder))}: {what}")
        resolved = str(path.resolve())
        if resolved not in found:
            found.append(resolved)
    return found


def read_added(folders: Sequence[str], class_names: Sequence[str], size: int, color: str,
               reporter: Reporter = SILENT) -> Added:
    """The images of --add folders: each folder's sub-folders named as a class (recursively), then its
    unknown/ (negatives, listed, not decoded). Anything else in a folder — another sub-folder, an image
    outside the class folders — is a one-line error: an image that is in no class folder is not labelled."""
    entries: list[tuple[Path, int, str]] = []  # (file, label, key prefix)
    negatives: list[str] = []
    for folder in map(Path, folders):
        for child in sorted(folder.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir() and child.name not in class_names and child.name != NEGATIVES:
                raise EdgeclsError(f"--add {folder}: {printable(child.name)}/ is not one of the classes "
                                   f"({', '.join(class_names)}) nor {NEGATIVES}/: move its images into a class folder")
            if not child.is_dir() and is_image_file(child):
                raise EdgeclsError(f"--add {folder}: {printable(child.name)} is in no class folder: move it into "
                                   f"the folder of its class, or into {NEGATIVES}/")
        for label, name in enumerate(class_names):
            if (folder / name).is_dir():
                entries += [(path, label, str(path.relative_to(folder))) for path in walk_images(folder / name)]
        negatives += negative_files([str(folder)], class_names)
    if folders and not entries and not negatives:
        raise EdgeclsError(f"--add {', '.join(folders)}: no images in class folders ({', '.join(class_names)}) or "
                           f"in {NEGATIVES}/")

    def decode(entry: tuple[Path, int, str]) -> tuple[Optional[np.ndarray], str]:
        try:
            return load_image(entry[0], (size, size), color), sha256_of(entry[0])
        except (ImageError, OSError) as exc:
            return None, first_line(exc)

    images, labels, files, keys, digests, unreadable = [], [], [], [], [], []
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        decoded = reporter.track(pool.map(decode, entries), "Decoding added images", len(entries))
        for (path, label, name), (pixels, digest) in zip(entries, decoded):
            if pixels is None:
                unreadable.append((str(path), digest))
                continue
            images.append(pixels)
            labels.append(label)
            files.append(str(path))
            keys.append(f"{name}|{label}|{digest}")
            digests.append(digest)
    channels = 1 if color == "grayscale" else 3
    return Added(np.stack(images) if images else np.zeros((0, size, size, channels), np.uint8),
                 np.asarray(labels, np.int64), files, keys, digests, negatives, unreadable, tuple(map(str, folders)))


def _refuse_two_labels(added: Added, class_names: Sequence[str], new_folders: Sequence[str]) -> None:
    """A one-line error when a file of a new --add folder is, byte for byte, also a file under another label
    (a class folder or unknown/ of any added folder): it would be trained as both (a picture collected twice,
    sorted once). The copy in the new folder is named as the one to move."""
    def new(path: str) -> bool:
        return any(_inside(path, folder) for folder in new_folders)

    named = [(path, class_names[label], digest)
             for path, label, digest in zip(added.files, added.labels.tolist(), added.digests)]
    for path in added.negatives:
        try:
            named.append((path, f"{NEGATIVES}/", sha256_of(path)))
        except OSError:  # read when the negatives are, and left out there
            continue
    first_of: dict[str, tuple[str, str]] = {}  # file SHA-256 -> (the first file, its label)
    clashes = []
    for path, label, digest in named:
        first = first_of.setdefault(digest, (path, label))
        if first[1] != label and (new(path) or new(first[0])):
            clashes.append((first, (path, label)))
    if clashes:
        (a, label_a), (b, label_b) = clashes[0]
        more = f" (and {len(clashes) - 1} more such files)" if len(clashes) > 1 else ""
        raise EdgeclsError(f"--add: {printable(a)} ({label_a}) and {printable(b)} ({label_b}) are the same file under "
                           f"two labels: it would be trained as both; move {printable(b if new(b) else a)} into the "
                           f"folder of its one label, or remove it{more}")


def grown(base: Dataset, added: Added) -> Dataset:
    """`base` with `added` after it: one dataset, whose fingerprint names the base and each added file."""
    if not len(added.labels):
        return replace(base, added_from=added.folders)
    images = np.concatenate([np.asarray(base.images), added.images])
    return Dataset(images, np.concatenate([base.labels, added.labels]), list(base.class_names), base.source,
                   base.color, paths=None if base.paths is None else [*base.paths, *added.files],
                   fingerprint=grown_fingerprint(base.fingerprint, added.keys), skipped=list(base.skipped),
                   pixels_sha256=hashlib.sha256(images.tobytes()).hexdigest(), added_from=added.folders)


def grown_fingerprint(base: str, keys: Sequence[str]) -> str:
    if not keys:
        return base
    digest = hashlib.sha256(base.encode())
    for key in keys:
        digest.update(f"\n{key}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:24]


def load_grown(data: str, folders: Sequence[str], size: int, color: str, class_names: Sequence[str],
               reporter: Reporter = SILENT) -> Dataset:
    """A run's dataset (what RunDir loads): its data, then the folders a --from run added, in order (none:
    the data as it is)."""
    base = load_dataset(data, size, color, reporter=reporter)
    if not folders:
        return base
    missing = [folder for folder in folders if not Path(folder).is_dir()]
    if missing:
        raise EdgeclsError(f"the run was trained with images added from {missing[0]}, which is no longer there: "
                           "put the folder back to export or bench the run")
    return grown(base, read_added(folders, class_names, size, color, reporter))


def negative_files(folders: Sequence[str], class_names: Sequence[str]) -> list[str]:
    """The images in the unknown/ sub-folders of added folders (none where a class is called unknown)."""
    if NEGATIVES in class_names:
        return []
    return [str(path) for folder in folders if (Path(folder) / NEGATIVES).is_dir()
            for path in walk_images(Path(folder) / NEGATIVES)]


def read_negatives(files: Sequence[str], size: int, color: str, seed: int = 0) -> Optional[np.ndarray]:
    """The negatives (unknown/ images) at a model's size and colour, a seeded sample of MAX_UNKNOWN of
    more; unreadable ones left out; None when there are none."""
    if len(files) > MAX_UNKNOWN:
        files = [files[i] for i in sorted(np.random.default_rng(seed).choice(len(files), MAX_UNKNOWN, replace=False))]
    found = []
    for path in files:
        try:
            found.append(load_image(path, (size, size), color))
        except (ImageError, OSError):
            continue
    return np.stack(found) if found else None


def mode_for(dataset: Dataset, dedupe: Optional[str]) -> str:
    """How an added image is compared with RUN's held-out ones: near (the default for a folder of image
    files) or exact (built-in and IDX data; --dedupe off also means exact: an identical copy of a test
    image is never trained on)."""
    if dedupe in ("near", "exact"):
        return dedupe
    return "near" if dedupe is None and dataset.paths is not None else "exact"


# ---------------------------------------------------------------------- train --from RUN --add
@dataclass
class Retraining:
    """The data of a --from run: the grown dataset, its split, the folders (all of them, RUN's first)
    and negatives, and what split.json records about it."""

    dataset: Dataset
    split: Split
    folders: list[str]
    negatives: list[str]
    record: dict[str, Any]
    given: str = ""  # RUN as the user named it (the record has it absolute)

    def options(self) -> dict[str, Any]:
        """What the new run's config.toml records of it: `train --config` of that file trains it again."""
        return {"from_run": self.record["run"], "add": list(self.folders)}

    def metrics(self) -> dict[str, Any]:
        """metrics.json's "from": where the run came from and what was added (split.json has the details)."""
        r = self.record
        return {"run": r["run"], "train_before": r["train_before"], "train": int(len(self.split.train)),
                "folders": r["folders"], "added": r["added"]["train"], "added_per_class": r["added"]["per_class"],
                "negatives": r["added"]["negatives"], "left_out": len(r["left_out"]),
                "unreadable": len(r["unreadable"])}

    def summary(self) -> str:
        r, added = self.record, self.record["added"]
        classes = ", ".join(f"{name}: {n}" for name, n in added["per_class"].items() if n)
        n_val, n_test, n_train = len(self.split.val), len(self.split.test), len(self.split.train)
        lines = [f"From {self.given or r['run']}: its {n_val} validation and {n_test} test images kept (the same by "
                 f"content digest); train {r['train_before']} -> {n_train}: {added['train']} added from "
                 f"{', '.join(r['folders']) or 'no folder'}"
                 + (f" ({classes})" if classes else "")]
        if added["negatives"]:
            lines.append(f"{_images(added['negatives'])} in {NEGATIVES}/: negatives for the unknown answer's rule")
        if r["left_out"]:
            named = "; ".join(f"{Path(item['file']).name}: {item['why']}" for item in r["left_out"][:SHOWN])
            more = f"; and {len(r['left_out']) - SHOWN} more (split.json)" if len(r["left_out"]) > SHOWN else ""
            lines.append(f"Left out {_images(len(r['left_out']), 'added image')}: {named}{more}")
        if r["unreadable"]:
            lines.append(f"warning: {_images(len(r['unreadable']), 'added file')} could not be decoded: "
                         + "; ".join(f"{p}: {why}" for p, why in r["unreadable"][:SHOWN]))
        return "\n".join(lines)


def retraining_data(from_run: str | os.PathLike, add: Sequence[str | os.PathLike], data: Optional[str] = None,
                    img_size: Optional[int] = None, color: Optional[str] = None, dedupe: Optional[str] = None,
                    fractions: Optional[tuple[float, float]] = None, reporter: Reporter = SILENT) -> Retraining:
    """RUN's dataset and split grown by the --add folders (see the module doc); `data`: where RUN's data
    is now (default: where its config says). `img_size`, `color` and the split's `fractions` (val, test),
    when given, must be RUN's: other values would make other held-out images."""
    run = Path(from_run)
    record = RunRecord.read(run)
    config = record.config
    own_fractions = (config.train.get("val_fraction"), config.train.get("test_fraction"))
    for name, given, own in (("--img-size", img_size, config.img_size), ("--color", color, config.color),
                             ("--val-fraction", fractions and fractions[0], own_fractions[0]),
                             ("--test-fraction", fractions and fractions[1], own_fractions[1])):
        if given is not None and own is not None and given != own:
            raise EdgeclsError(f"--from {run} keeps its validation and test images as they were ({name} {own}): "
                               f"{name} {given} would make others; leave it out")
    size, colour = config.img_size, config.color
    own_folders = [str(folder) for folder in config.train.get("add") or []]
    gone = [folder for folder in own_folders if not Path(folder).is_dir()]
    if gone:
        raise EdgeclsError(f"{run} was trained with images added from {gone[0]}, which is no longer there: its "
                           "training split cannot be rebuilt")
    folders = add_folders([*own_folders, *add])
    base = load_dataset(data or config.data, size, colour, reporter=reporter)
    if list(base.class_names) != list(record.labels):
        raise EdgeclsError(f"{data or config.data} has the classes {', '.join(base.class_names)}, {run} has "
                           f"{', '.join(record.labels)}")
    everything = read_added(folders, record.labels, size, colour, reporter)
    new_folders = [folder for folder in folders if folder not in own_folders]
    if add and not new_folders:
        raise EdgeclsError(f"--add {', '.join(map(str, add))}: already added by {run} (its images are in its "
                           "training): add a folder of new pictures")
    _refuse_two_labels(everything, record.labels, new_folders)
    own = sum(1 for path in everything.files if any(_inside(path, folder) for folder in own_folders))
    dataset = grown(base, everything)
    count = len(base.labels) + own  # RUN's own dataset: the base and what it added
    view = Dataset(dataset.images[:0], dataset.labels[:count], dataset.class_names, dataset.source, colour,
                   fingerprint=grown_fingerprint(base.fingerprint, everything.keys[:own]),
                   added_from=tuple(own_folders))
    before = load_split(record.split, view)
    digests = {part: part_digest(dataset.images, getattr(before, part)) for part in ("val", "test")}
    recorded = record.split.get("digests") or {}
    changed = [part for part in ("val", "test") if recorded.get(part) not in (None, digests[part])]
    if changed:
        raise EdgeclsError(f"the {changed[0]} images of {run} are not the ones its split.json records (their content "
                           "digest differs): the data changed since it was trained")

    mode = mode_for(base, dedupe)
    accepted, left_out = _new_images(dataset, before, count, base, mode, everything.files[own:], reporter)
    negatives = [path for path in everything.negatives if any(_inside(path, folder) for folder in new_folders)]
    if new_folders and not accepted and not negatives:  # a whole training for nothing: say why instead
        unreadable = sum(1 for path, _ in everything.unreadable if any(_inside(path, f) for f in new_folders))
        why = []
        if left_out:
            why.append(f"{len(left_out)} left out: {Path(left_out[0]['file']).name} {left_out[0]['why']}"
                       + (", ..." if len(left_out) > 1 else ""))
        if unreadable:
            why.append(f"{unreadable} could not be decoded")
        raise EdgeclsError(f"--add {', '.join(map(str, add))}: no new image to train on ("
                           f"{'; '.join(why) or 'no images in its class folders or ' + NEGATIVES + '/'}): "
                           f"the new run would train on {run}'s images again")
    train = np.sort(np.concatenate([before.train, np.asarray(accepted, np.int64)]))
    per_class = np.bincount(dataset.labels[accepted], minlength=len(record.labels)) if accepted else \
        np.zeros(len(record.labels), np.int64)
    origin = {
        "run": str(run.resolve()), "digests": digests, "train_before": int(len(before.train)),
        "folders": new_folders, "check": f"{mode}: " + ("a near-duplicate of a validation or test image, or "
                                                        "identical to an image of the run" if mode == "near"
                                                        else "identical to an image of the run"),
        "added": {"train": len(accepted), "per_class": dict(zip(record.labels, map(int, per_class))),
                  "negatives": len(negatives)},
        "left_out": left_out,
        "unreadable": [(path, why) for path, why in everything.unreadable
                       if any(_inside(path, folder) for folder in new_folders)],
    }
    source = (f"the {len(before.test)} test images of {run} (kept by --from; the same by content digest)")
    split = Split(train, before.val, before.test, source, dedupe=record.split.get("dedupe"), origin=origin)
    result = Retraining(dataset, split, folders, everything.negatives, origin, str(from_run))
    reporter(result.summary())
    return result


def _images(n: int, noun: str = "image") -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _inside(path: str, folder: str) -> bool:
    return Path(folder) in Path(path).parents


def _new_images(dataset: Dataset, before: Split, count: int, base: Dataset, mode: str, files: Sequence[str],
                reporter: Reporter) -> tuple[list[int], list[dict[str, Any]]]:
    """(the dataset indices of the new images that join train, the ones left out and why)."""
    from edgecls.duplicates import HASH_IMAGE_SIZE, hash_images, near_copies

    parts = before.part_of(count)
    owner: dict[str, int] = {}
    for index, digest in enumerate(image_digests(dataset.images[:count])):
        owner.setdefault(digest, index)
    accepted, left_out, candidates = [], [], []
    new = range(count, len(dataset.labels))
    for index, digest, path in zip(new, image_digests(dataset.images[count:]), files):
        if digest in owner:
            first = owner[digest]
            if first >= count:
                like, part = files[first - count], ""
                why = f"identical to {Path(like).name}, added before it"
            else:
                part = str(parts[first])
                like = _id(dataset, first)
                why = (f"identical to {_name(dataset, first)}, a {part} image of the run" if part
                       else f"identical to {_name(dataset, first)}, already in the run's data")
            left_out.append({"file": path, "why": why, "like": like, "part": part or None})
            continue
        owner[digest] = index
        candidates.append((index, path))
    held_out = np.concatenate([before.val, before.test])
    if mode == "near" and candidates and len(held_out):
        originals = hash_images(base, reporter)[held_out]
        others = np.stack([load_image(path, (HASH_IMAGE_SIZE, HASH_IMAGE_SIZE), base.color) for _, path in candidates])
        copies = near_copies(originals, others, mode)
        for j, (index, path) in enumerate(candidates):
            pair = copies.get(j)
            if pair is None:
                accepted.append(index)
                continue
            first = int(held_out[pair.a])
            left_out.append({"file": path, "why": f"a near-duplicate of {_name(dataset, first)}, a {parts[first]} "
                             f"image (aligned pixels {pair.pixels:.2f})", "like": _id(dataset, first),
                             "part": str(parts[first])})
    else:
        accepted = [index for index, _ in candidates]
    return accepted, left_out


def _name(dataset: Dataset, index: int) -> str:
    return Path(dataset.paths[index]).name if dataset.paths is not None else f"image {index} of {dataset.source}"


def _id(dataset: Dataset, index: int) -> Any:
    return dataset.paths[index] if dataset.paths is not None else int(index)


def next_run_dir(run: str | os.PathLike) -> Path:
    """Where `train --from RUN` writes without --out: RUN-2 beside it (or RUN-3, ... : the first free)."""
    path = Path(run)
    stem, _, number = path.name.rpartition("-")
    base, n = (stem, int(number)) if stem and number.isdigit() else (path.name, 1)
    while True:
        n += 1
        candidate = path.with_name(f"{base}-{n}")
        if not candidate.exists():
            return candidate
