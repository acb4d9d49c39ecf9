"""Keep the pictures the device was unsure of, for the next training: `predict --collect DIR`.

Each classified image or frame is offered to a Collector; the first `--collect-when` rule that fires
keeps it, as DIR/<answer>/<name>.<ext> (the answer: the predicted label, or "unknown") beside a JSON
sidecar of the same name (time, source, frame, the model's SHA-256, top-k, typicality, the rule).
The folder layout is the labelling step: a person moves each file into the right class folder.

Rules (`--collect-when`, a comma list or the option repeated; the first that fires is recorded):
  unknown            the model's open-set rule answered unknown
  uncertain<0.6      the calibrated top probability is below 0.6
  margin<0.2         the top probability minus the second is below 0.2
  class=NAME         the answer is NAME (a label, or unknown)
  sample=0.01        a seeded 1 % of all images
  every=600s         at most one image a period (s, m or h), whatever it shows
  disagree           a second model (--shadow OTHER.tflite, e.g. the float32 file beside the int8 one)
                     answers another class; it runs on every Nth image only (--shadow-every)

What keeps the folder useful and the device alive:
- near-identical consecutive pictures are kept once: a picture whose perceptual hash
  (edgecls.runtime.phash) is within DEDUPE_BITS of the last one kept, and whose aligned pixels confirm
  it (small glyphs, e.g. digits in two fonts, can hash alike), is skipped and counted;
- a file already in the folder (kept by an earlier run, and perhaps sorted into a class folder since)
  is not kept again: collecting the same pictures twice would put one picture under two labels;
- `max_mb` caps the folder's size and `reserve_mb` keeps that much of its disk free: when either
  would be passed, the picture is not kept (a smaller one may still be), said once and counted;
- every file is written to a hidden temporary name and renamed (edgecls.atomic): a kill mid-write
  leaves no half-written picture, only a hidden .partial that the next run removes.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls import jsonio
from edgecls.atomic import check_folder_writable, nearest_existing, write_bytes_atomic
from edgecls.bounds import check_bound
from edgecls.errors import EdgeclsError
from edgecls.files import read_capped, sha256_of
from edgecls.provenance import iso_time

UNKNOWN_FOLDER = "unknown"
FLAT_LEVELS = 4  # a picture whose levels span this little is flat (no pattern for the aligned pixel check)
DEDUPE_BITS = 6  # of 64: consecutive frames of a static scene differ by a few bits (noise, JPEG); another scene by ~30
DEFAULT_RESERVE_MB = 200.0  # free space the collector leaves on the disk
JPEG_QUALITY = 95  # frames are kept as JPEG (files as their own bytes)
_RULE = re.compile(r"^(unknown|disagree|uncertain<(?P<top>[0-9.]+)|margin<(?P<margin>[0-9.]+)|class=(?P<label>.+)|"
                   r"sample=(?P<share>[0-9.]+)|every=(?P<period>[0-9.]+)(?P<unit>[smh]?))$")
MAX_KEPT_BYTES = 1 << 30  # an image file copied whole into the collect folder; more is no image edgecls decodes
DEFAULT_SHADOW_EVERY = 5  # the second model runs on every 5th image offered: a fifth of its cost
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class When:
    """One --collect-when rule."""

    text: str  # as written: recorded in the sidecar
    kind: str  # unknown | uncertain | margin | class | sample | every
    value: Any = None


def parse_when(texts: Sequence[str]) -> list[When]:
    """--collect-when values (each a rule or a comma list of them) -> rules; one-line errors."""
    rules = []
    for text in texts:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            match = _RULE.match(part)
            if match is None:
                raise EdgeclsError(f"--collect-when {part!r}: use unknown, uncertain<0.6, margin<0.2, class=NAME, "
                                   "sample=0.01, every=600s or disagree")
            kind = part.split("<")[0].split("=")[0]
            value: Any = None
            if kind in ("uncertain", "margin", "sample"):
                value = float(match.group({"uncertain": "top", "margin": "margin", "sample": "share"}[kind]))
                if not 0.0 < value <= 1.0:
                    raise EdgeclsError(f"--collect-when {part!r}: the number must be above 0 and at most 1")
            elif kind == "class":
                value = match.group("label")
            elif kind == "every":
                value = float(match.group("period")) * _UNITS[match.group("unit")]
                if value <= 0:
                    raise EdgeclsError(f"--collect-when {part!r}: the period must be positive")
            rules.append(When(part, kind, value))
    if not rules:
        raise EdgeclsError("--collect-when names no rule")
    return rules


def default_when(has_rule: bool) -> list[When]:
    """Without --collect-when: what the model says it does not know, else what it is unsure of."""
    return parse_when(["unknown"] if has_rule else ["uncertain<0.6"])


@dataclass
class Counts:
    kept: int = 0
    similar: int = 0  # near-identical to the picture kept before
    already: int = 0  # the very file is in the folder already (an earlier run kept it)
    over_quota: int = 0
    shadow_runs: int = 0  # images the second model classified (disagree)
    bytes: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


class Collector:
    """Offer each answer with `consider`; it keeps the ones a rule picks (see the module doc)."""

    def __init__(self, folder: str | os.PathLike, rules: list[When], model: Path, labels: Sequence[str],
                 max_mb: Optional[float] = None, reserve_mb: float = DEFAULT_RESERVE_MB, seed: int = 0,
                 log: Callable[[str], None] = lambda message: None, shadow: Any = None,
                 shadow_every: int = DEFAULT_SHADOW_EVERY):
        """`shadow`: a second Classifier for `disagree` (same labels), run on every `shadow_every`th image."""
        self.folder = Path(folder)
        self.rules, self.labels, self.log = rules, list(labels), log
        if any(rule.kind == "disagree" for rule in rules) and shadow is None:
            raise EdgeclsError("--collect-when disagree needs a second model: --shadow OTHER.tflite")
        if shadow is not None and list(shadow.labels) != self.labels:
            raise EdgeclsError(f"--shadow {shadow.path.name} has other labels than the model: it cannot disagree "
                               "on the same classes")
        check_bound("--shadow-every", shadow_every)
        self.shadow, self.shadow_every, self._offered = shadow, shadow_every, 0
        for rule in rules:
            if rule.kind == "class" and rule.value not in (*self.labels, UNKNOWN_FOLDER):
                raise EdgeclsError(f"--collect-when {rule.text}: the model has no class {rule.value!r}")
        if max_mb is not None:
            check_bound("--collect-max-mb", max_mb)
        check_bound("--collect-reserve-mb", reserve_mb)
        self.max_bytes = None if max_mb is None else int(max_mb * 1e6)
        self.reserve_bytes = int(max(0.0, reserve_mb) * 1e6)
        self.model = {"file": model.name, "sha256": sha256_of(model)}  # read in 1 MiB blocks
        self.counts = Counts()
        self._rng = np.random.default_rng(seed)
        self._last_kept_at: dict[str, float] = {}
        self._last_hash: Optional[np.ndarray] = None
        self._last_picture: Optional[np.ndarray] = None
        self._full = ""  # why pictures stopped being kept, once they did
        # the folder's pictures by size: only a file of the same size can be one about to be kept again
        self._by_size: dict[int, list[Path]] = {}
        self._digests: dict[Path, str] = {}  # SHA-256, read when a picture of the same size comes
        # Made at the first picture kept (a run that fails or keeps nothing leaves no empty folder);
        # what would stop it (a file in the way, a read-only disk) is refused now, before any work.
        check_folder_writable("--collect", self.folder, self.folder)
        self._used = self._tidy_and_measure() if self.folder.is_dir() else 0

    def _tidy_and_measure(self) -> int:
        """Remove the hidden .partial files a killed run left; the bytes the folder already holds (its
        pictures indexed by size)."""
        used = 0
        for root, _, files in os.walk(self.folder):
            for name in files:
                path = Path(root, name)
                if name.startswith(".") and name.endswith(".partial"):
                    path.unlink(missing_ok=True)
                    continue
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
                used += size
                if not name.endswith(".json"):
                    self._by_size.setdefault(size, []).append(path)
        return used

    def _already_kept(self, content: bytes) -> bool:
        """Whether these bytes are a file of the folder already (hashed only when one has their size)."""
        same_size = self._by_size.get(len(content), ())
        if not same_size:
            return False
        import hashlib

        digest = hashlib.sha256(content).hexdigest()
        for path in same_size:
            if path not in self._digests:
                try:
                    self._digests[path] = sha256_of(path)
                except OSError:  # moved or removed since: not there
                    self._digests[path] = ""
            if self._digests[path] == digest:
                return True
        return False

    # ------------------------------------------------------------------ deciding
    def fired(self, classes: Sequence[Any], unknown: bool, when: float,
              second_opinion: Callable[[], Optional[str]] = lambda: None) -> Optional[When]:
        """The first rule that picks this answer (top-k classes, best first), or None. `second_opinion()`:
        the shadow model's label for the same picture (None when it does not run on this one)."""
        answer = UNKNOWN_FOLDER if unknown else classes[0].label
        for rule in self.rules:
            if rule.kind == "disagree":
                other = second_opinion()
                if other is not None and other != classes[0].label:
                    return rule
            if rule.kind == "unknown" and unknown:
                return rule
            if rule.kind == "uncertain" and classes[0].score < rule.value:
                return rule
            second = classes[1].score if len(classes) > 1 else 0.0
            if rule.kind == "margin" and classes[0].score - second < rule.value:
                return rule
            if rule.kind == "class" and answer == rule.value:
                return rule
            if rule.kind == "sample" and self._rng.random() < rule.value:
                return rule
            if rule.kind == "every" and when - self._last_kept_at.get(rule.text, -np.inf) >= rule.value:
                return rule
        return None

    @property
    def needs_two(self) -> bool:
        """Whether a rule reads the second class (margin): the caller asks the classifier for two."""
        return any(rule.kind == "margin" for rule in self.rules)

    # ------------------------------------------------------------------ keeping
    def consider(self, classes: Sequence[Any], unknown: bool, typicality: Optional[float], source: Any,
                 pixels: Optional[np.ndarray] = None, path: Optional[Path] = None, frame: Optional[int] = None,
                 timestamp: Optional[float] = None, content: Optional[bytes] = None,
                 model: Optional[dict[str, str]] = None) -> Optional[Path]:
        """Keep this image if a rule fires and it is no near-copy of the last one kept and there is room;
        the path written, or None. The image: its original file at `path`, or encoded bytes as they came
        (`content`, e.g. an upload to edgecls serve; `pixels`, its decoded picture, then only hashes it),
        or a frame `pixels` (RGB uint8, kept as JPEG). `model` ({"file", "sha256"}): the model that
        answered, when it is not the one the collector was made for (a server's model after a swap)."""
        when = time.time() if timestamp is None else timestamp
        self._offered += 1
        original = content if content is not None else path
        rule = self.fired(classes, unknown, when,
                          lambda: self._second_opinion(pixels if original is None else original))
        if rule is None:
            return None
        picture = pixels if pixels is not None else _decoded(original)
        digest = _hash(picture)
        if digest is not None and self._last_hash is not None and _bits(digest, self._last_hash) <= DEDUPE_BITS \
                and _same_picture(picture, self._last_picture):
            self.counts.similar += 1
            return None
        if content is not None:
            suffix = _suffix_of(content)
        elif path is not None:
            try:  # the file was just decoded, but it may have changed since, or be huge
                content, suffix = read_capped(path, MAX_KEPT_BYTES), Path(path).suffix.lower()
            except OSError as exc:
                self.log(f"not kept: {path}: {exc.strerror or exc}")
                return None
        else:
            content, suffix = _encoded(pixels), ".jpg"
        if self._already_kept(content):
            self.counts.already += 1
            return None
        answer = UNKNOWN_FOLDER if unknown else classes[0].label
        sidecar = jsonio.dumps({
            "time": iso_time(when), "source": str(source), "file": str(path) if path is not None else None,
            "frame": frame, "model": model or self.model, "answer": answer, "unknown": bool(unknown),
            "typicality": None if typicality is None else round(float(typicality), 4),
            "classes": [{"index": c.index, "label": c.label, "score": round(float(c.score), 6)} for c in classes],
            "rule": rule.text}, indent=1, ensure_ascii=False).encode("utf-8")
        if not self._room_for(len(content) + len(sidecar)):
            return None
        folder = self.folder / _folder_name(answer)
        name = _unique(folder, _stem(source, path, frame, when), suffix)
        written = write_bytes_atomic(folder / f"{name}{suffix}", content)  # the picture, then what it is
        write_bytes_atomic(folder / f"{name}.json", sidecar)
        self._by_size.setdefault(len(content), []).append(written)
        self._used += len(content) + len(sidecar)
        self._last_hash, self._last_picture = digest, picture
        self._last_kept_at[rule.text] = when
        self.counts.kept += 1
        self.counts.bytes += len(content) + len(sidecar)
        self.counts.by_rule[rule.text] = self.counts.by_rule.get(rule.text, 0) + 1
        return written

    def _second_opinion(self, image: Any) -> Optional[str]:
        """The shadow model's label for `image` (a path, encoded bytes or pixels), on every Nth image offered."""
        if self.shadow is None or (self._offered - 1) % self.shadow_every:
            return None
        self.counts.shadow_runs += 1
        return self.shadow.classify(image)[0].label

    def _room_for(self, size: int) -> bool:
        reason = None  # (what the log says once, what the summary says)
        if self.max_bytes is not None and self._used + size > self.max_bytes:
            reason = (f"its {self.max_bytes / 1e6:g} MB quota (--collect-max-mb)", "the folder is full")
        elif shutil.disk_usage(nearest_existing(self.folder)).free - size < self.reserve_bytes:
            reason = (f"the {self.reserve_bytes / 1e6:g} MB of free disk it leaves (--collect-reserve-mb)",
                      "the disk is down to its reserve")
        if reason is None:
            return True
        self.counts.over_quota += 1
        if not self._full:
            self._full = reason[1]
            self.log(f"collect: {self.folder} reached {reason[0]} after {self.counts.kept} kept: a picture that "
                     "does not fit is not kept (said once)")
        return False

    def summary(self) -> str:
        c = self.counts
        rules = ", ".join(f"{n} by {rule}" for rule, n in c.by_rule.items())
        parts = [f"collect: kept {c.kept} in {self.folder} ({c.bytes / 1e6:.1f} MB{'; ' + rules if rules else ''})"
                 if c.kept or self.folder.is_dir() else f"collect: kept none (so {self.folder} was not made)"]
        if c.similar:
            parts.append(f"{c.similar} near-identical to the one before not kept")
        if c.already:
            parts.append(f"{c.already} already in the folder not kept again")
        if c.over_quota:
            parts.append(f"{c.over_quota} not kept: {self._full}")
        if self.shadow is not None:
            parts.append(f"the second model ran on {c.shadow_runs}")
        return ", ".join(parts)


@dataclass(frozen=True)
class CollectOptions:
    """`--collect DIR` and the options that shape it, as `predict` and `serve` take them."""

    folder: str
    when: tuple[str, ...] = ()  # --collect-when values as given (each a rule or a comma list); none: the default
    max_mb: Optional[float] = None
    reserve_mb: Optional[float] = None
    shadow: Optional[str] = None  # the second model's file, for disagree
    shadow_every: Optional[int] = None


def collect_options(folder: Optional[str | os.PathLike], when: Optional[Sequence[str]] = None,
                    max_mb: Optional[float] = None, reserve_mb: Optional[float] = None,
                    shadow: Optional[str | os.PathLike] = None,
                    shadow_every: Optional[int] = None) -> Optional[CollectOptions]:
    """The --collect options given, checked as far as they can be without the model (None without
    --collect); one-line errors: an option without --collect DIR, a rule that does not parse."""
    if folder is None:
        if when or max_mb is not None or reserve_mb is not None or shadow is not None or shadow_every is not None:
            raise EdgeclsError("--collect-when, --collect-max-mb, --collect-reserve-mb and --shadow need --collect DIR")
        return None
    if when:
        parse_when(when)
    return CollectOptions(str(folder), tuple(when or ()), max_mb, reserve_mb,
                          None if shadow is None else str(shadow), shadow_every)


def collector_for(classifier: Any, options: Optional[CollectOptions],
                  log: Callable[[str], None]) -> Optional[Collector]:
    """A Collector for `classifier`'s model per `options` (None without them); the shadow model of
    `disagree` is loaded like the model (same threads and interpreter). One-line errors for rules the
    model cannot follow."""
    if options is None:
        return None
    rules = parse_when(options.when) if options.when else default_when(classifier.open_set_rule is not None)
    if any(rule.kind == "unknown" for rule in rules) and classifier.open_set_rule is None:
        raise EdgeclsError(f"--collect-when unknown: {classifier.path.name} has no unknown rule (give it one with "
                           "edgecls calibrate, or collect uncertain<0.6)")
    second = None
    if options.shadow is not None:
        from edgecls.runtime.classify import Classifier

        second = Classifier(options.shadow, num_threads=classifier.num_threads, backend=classifier.backend.name,
                            open_set=False)
    return Collector(options.folder, rules, classifier.path, classifier.labels, options.max_mb,
                     DEFAULT_RESERVE_MB if options.reserve_mb is None else options.reserve_mb, log=log, shadow=second,
                     shadow_every=DEFAULT_SHADOW_EVERY if options.shadow_every is None else options.shadow_every)


def _hash(picture: Optional[np.ndarray]) -> Optional[np.ndarray]:
    if picture is None:
        return None
    from edgecls.runtime.phash import phash

    return phash(np.asarray(picture))


def _same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """The aligned pixels' confirmation of two close hashes (edgecls.runtime.phash). Two flat pictures (a lens
    cap, a blank wall) have no pattern to correlate: they are one when their levels are."""
    from edgecls.runtime.phash import PIXEL_CONFIRM, aligned_similarity

    if np.ptp(a) <= FLAT_LEVELS and np.ptp(b) <= FLAT_LEVELS:
        return abs(float(np.mean(a)) - float(np.mean(b))) <= FLAT_LEVELS
    return aligned_similarity(a, b) >= PIXEL_CONFIRM


def _bits(a: np.ndarray, b: np.ndarray) -> int:
    from edgecls.runtime.phash import hamming

    return int(hamming(a, b))


def _decoded(image: Optional[Path | bytes]) -> Optional[np.ndarray]:
    """A file's (or encoded bytes') pixels for its hash (small: the hash shrinks it to 32x32 anyway);
    None if unreadable."""
    if image is None:
        return None
    from edgecls.runtime.preprocess import ImageError, load_image

    try:
        return load_image(image, (64, 64), "rgb")
    except (ImageError, OSError):
        return None


_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp", "TIFF": ".tif"}


def _suffix_of(content: bytes) -> str:
    """The file extension of encoded image bytes, by their format (read from the header only)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:
            found = image.format or ""
    except (UnidentifiedImageError, OSError, ValueError):
        found = ""
    return _SUFFIXES.get(found, f".{found.lower()}" if found.isalnum() else ".img")


def _encoded(pixels: np.ndarray) -> bytes:
    from PIL import Image

    picture = np.asarray(pixels, np.uint8)
    image = Image.fromarray(picture[..., 0] if picture.ndim == 3 and picture.shape[2] == 1 else picture)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _folder_name(answer: str) -> str:
    """A label as a folder name: path separators and leading dots out (the person renames by moving)."""
    cleaned = re.sub(r"[\\/\x00-\x1f]", "_", answer).strip() or "_"
    return "_" + cleaned if cleaned.startswith(".") else cleaned


def _stem(source: Any, path: Optional[Path], frame: Optional[int], when: float) -> str:
    if path is not None:
        return re.sub(r"[^\w.-]+", "_", Path(path).stem)[:80] or "image"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    if frame is None:  # an image without a file or a frame number (an upload): the time, to the millisecond
        return f"image-{stamp}-{int(when * 1000) % 1000:03d}"
    base = re.sub(r"[^\w.-]+", "_", Path(str(source)).stem if "://" not in str(source) else "stream")[:40]
    return f"{base or 'frame'}-{stamp}-f{frame:07d}"


def _unique(folder: Path, stem: str, suffix: str) -> str:
    name, n = stem, 1
    while (folder / f"{name}{suffix}").exists() or (folder / f"{name}.json").exists():
        n += 1
        name = f"{stem}-{n}"
    return name
