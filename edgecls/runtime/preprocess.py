"""Turn an image file into the uint8 pixels a model takes.

This is the one implementation used by both training (`edgecls.data`) and the device
(`edgecls.runtime`), so a picture becomes the same tensor in both places. Scaling to
[0, 1] or [-1, 1] is not done here: it lives inside the model (a Rescaling layer).
"""

from __future__ import annotations

import importlib
import io
import os
import re
import stat
import struct
from pathlib import Path
from typing import Literal, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgecls.errors import EdgeclsError, first_line
from edgecls.files import kind_of, open_regular

ColorMode = Literal["grayscale", "rgb"]
COLOR_MODES: tuple[str, ...] = ("grayscale", "rgb")
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# The Pillow decoders edgecls opens a file with, and nothing else is tried (JPEG also opens a phone's
# multi-picture MPO; TIFF is read when a file is named explicitly, folder walks keep the extensions above).
PILLOW_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
# Each format's Pillow plugin, imported when a file of that format is met: Image.open would otherwise
# import all of Pillow's ~40 plugins (AVIF, PDF, EPS ...) as soon as one asked-for format is not yet
# registered, costing a cold `edgecls predict` of one file about 20 ms and 5 MiB.
_PLUGINS = {"JPEG": "JpegImagePlugin", "PNG": "PngImagePlugin", "BMP": "BmpImagePlugin", "GIF": "GifImagePlugin",
            "WEBP": "WebPImagePlugin", "TIFF": "TiffImagePlugin"}
_EXTENSION_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF",
                      ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
SUPPORTED_TEXT = "JPEG, PNG, BMP, GIF, WebP, TIFF"
# Transparent pixels are composited onto white (a photo on paper), not left as whatever
# colour the transparent pixels happen to store.
ALPHA_BACKGROUND = 255
# How a picture becomes the model's size. Pillow's filters antialias when shrinking (like tf.image's
# resize with antialias=True); "area" is Pillow's box filter (the mean of the covered pixels).
RESIZE_FILTERS: dict[str, Image.Resampling] = {
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "area": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}
RESIZE_METHODS: tuple[str, ...] = tuple(RESIZE_FILTERS)
DEFAULT_RESIZE = "bilinear"  # edgecls' training resize, and the default for a model that names none
# "stretch": the whole picture, aspect ratio not kept; "crop": the largest centred region of the
# model's aspect ratio, then resized (the ImageNet evaluation style).
FITS: tuple[str, ...] = ("stretch", "crop")
DEFAULT_FIT = "stretch"

# bytes: an encoded image file's content (an upload to `edgecls serve`), decoded like a file.
ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray, bytes]
_PATH_TYPE = type(Path())  # PosixPath or WindowsPath: Path(path) would build a copy, ~1 us an image


class ImageError(EdgeclsError):
    """An image that cannot be turned into pixels; the message says why."""


class PixelLimitError(ImageError):
    """An image whose header announces more pixels than PIL.Image.MAX_IMAGE_PIXELS: refused before
    decoding (a decompression bomb). A server answers it 413, not 400, naming its own option (`set_by`)."""

    def __init__(self, size: str):
        self.size = size  # "120x100 = 12,000 pixels", or what Pillow said of it
        super().__init__(self.set_by("PIL.Image.MAX_IMAGE_PIXELS"))

    def set_by(self, setting: str) -> str:
        """The message, naming `setting` as what sets the limit."""
        return f"decompression bomb refused: {self.size} is over the limit of {Image.MAX_IMAGE_PIXELS:,} ({setting})"


def load_image(source: ImageSource, size: tuple[int, int], color: ColorMode, resize: str = DEFAULT_RESIZE,
               fit: str = DEFAULT_FIT) -> np.ndarray:
    """Decode `source` (a file, the encoded bytes of one, a PIL image or an array) and return uint8
    pixels of shape (height, width, channels).

    `size` is (height, width); `color` is "grayscale" (1 channel) or "rgb" (3 channels).
    Applies EXIF orientation, converts any Pillow mode, decodes large JPEGs at reduced
    size (draft mode) and resizes with `resize` (one of RESIZE_METHODS), the whole picture
    (`fit` "stretch") or its centred region of the model's aspect ratio ("crop"). Raises ImageError.
    """
    if color not in COLOR_MODES:
        raise ImageError(f"unknown colour mode {color!r}: use one of {', '.join(COLOR_MODES)}")
    check_preprocessing(resize, fit)
    height, width = size
    if isinstance(source, np.ndarray):
        ready = _array_if_ready(source, size, color)
        if ready is not None:
            return ready
        image = _image_from_array(source)
    elif isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (bytes, bytearray, memoryview)):
        image = _open(bytes(source), (width, height), color)
    else:
        image = _open(source if type(source) is _PATH_TYPE else Path(source), (width, height), color)
    try:
        image = _upright(image)
        image = _to_mode(image, "L" if color == "grayscale" else "RGB")
        if image.size != (width, height):
            box = _centre_box(image.size, (width, height)) if fit == "crop" else None
            image = image.resize((width, height), RESIZE_FILTERS[resize], box=box)
        pixels = np.asarray(image, dtype=np.uint8)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow reports corrupt data with these
        raise ImageError(f"corrupt image data: {first_line(exc)}") from None
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def check_preprocessing(resize: str, fit: str) -> None:
    """Raise ImageError unless `resize` and `fit` are known names."""
    if resize not in RESIZE_FILTERS:
        raise ImageError(f"unknown resize method {resize!r}: use one of {', '.join(RESIZE_METHODS)}")
    if fit not in FITS:
        raise ImageError(f"unknown fit {fit!r}: use one of {', '.join(FITS)}")


def _centre_box(source_wh: tuple[int, int], target_wh: tuple[int, int]) -> tuple[float, float, float, float]:
    """The largest centred (left, upper, right, lower) region of `source_wh` with the target's aspect ratio."""
    (w, h), (tw, th) = source_wh, target_wh
    if w * th > h * tw:  # wider than the target: trim the sides
        keep = h * tw / th
        return ((w - keep) / 2, 0.0, (w + keep) / 2, float(h))
    keep = w * th / tw
    return (0.0, (h - keep) / 2, float(w), (h + keep) / 2)


def _open(path: Path | bytes, target_wh: tuple[int, int], color: ColorMode) -> Image.Image:
    """Open a file, or the encoded bytes of one, checked up to the pixel limit (nothing decoded yet)."""
    try:
        if isinstance(path, bytes):
            if not path:
                raise ImageError("empty image (0 bytes)")
            image = Image.open(io.BytesIO(path), formats=_formats_for(path))
        else:
            # stat first: a FIFO would block Image.open forever, /dev/urandom would be read without end.
            st = os.stat(path)
            if stat.S_ISDIR(st.st_mode):
                raise ImageError(f"is a folder, not an image: {path}")
            if not stat.S_ISREG(st.st_mode):
                raise ImageError(f"is a {kind_of(st.st_mode)}, not an image file")
            if st.st_size == 0:
                raise ImageError("empty file (0 bytes)")
            # Only the formats edgecls supports: a PostScript file named .jpg must never reach Ghostscript.
            image = _open_named_format(path) or Image.open(path, formats=_formats_for(path))
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ImageError(f"is a folder, not an image: {path}") from None
    except PermissionError:
        raise ImageError(f"permission denied: {path}") from None
    except Image.DecompressionBombError as exc:
        raise _bomb(exc) from None
    except UnidentifiedImageError:
        kind = _signature(path)
        if kind in _SUPPORTED_SIGNATURES:
            raise ImageError(f"corrupt {kind} file (it starts like one, but Pillow cannot parse it)") from None
        if kind:
            raise ImageError(f"not a supported image format ({kind}; edgecls reads {SUPPORTED_TEXT})") from None
        raise ImageError("not an image Pillow can decode") from None
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise ImageError(f"truncated or corrupt image: {first_line(exc)}") from None
        raise ImageError(f"cannot read: {exc.strerror or first_line(exc)}") from None
    except (ValueError, SyntaxError, struct.error, EOFError) as exc:  # a hostile header (e.g. a zlib-bomb text chunk)
        raise ImageError(f"corrupt image data: {first_line(exc)}") from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit and image.width * image.height > limit:
        raise _bomb((image.width, image.height))
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the photo is much larger than the
        # model input: several times faster, and never smaller than the requested size.
        if _orientation(image) in (5, 6, 7, 8):  # rotated by 90 degrees once upright
            target_wh = target_wh[::-1]
        image.draft("L" if color == "grayscale" else "RGB", target_wh)
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise _bomb(exc) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"truncated or corrupt image: {first_line(exc)}") from None
    return image


def _bomb(found: tuple[int, int] | Exception) -> PixelLimitError:
    """The refusal of an image over the pixel limit, in one wording whoever found it: this module from the
    header's size, or Pillow (its own check refuses twice the limit as it opens, with that double in its text)."""
    if isinstance(found, Exception):
        pixels = re.search(r"\((\d+) pixels\)", str(found))
        size = f"{int(pixels[1]):,} pixels" if pixels else "the image"
    else:
        size = f"{found[0]}x{found[1]} = {found[0] * found[1]:,} pixels"
    return PixelLimitError(size)


_SUPPORTED_SIGNATURES = ("JPEG", "PNG", "GIF", "BMP", "WebP", "TIFF")
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"RIFF", "WebP"),
               (b"%!PS", "PostScript"), (b"\xc5\xd0\xd3\xc6", "PostScript"), (b"%PDF", "PDF"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x00\x0cjP", "JPEG 2000"),
               (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"\x00\x00\x01\x00", "ICO"), (b"8BPS", "PSD"))


def _open_named_format(path: Path) -> Image.Image | None:
    """The file opened as the format its extension names (no extra read: the common case), or None
    when it has no such extension or is not that format (then its first bytes decide)."""
    named = _EXTENSION_FORMATS.get(path.suffix.lower())
    if named is None:
        return None
    importlib.import_module(f"PIL.{_PLUGINS[named]}")
    try:
        return Image.open(path, formats=(named,))
    except UnidentifiedImageError:
        return None


def _formats_for(path: Path | bytes) -> tuple[str, ...]:
    """The Pillow format the file's (or encoded bytes') first bytes announce, its plugin imported; when
    they announce none of ours, all of PILLOW_FORMATS (all imported), so that Pillow decides exactly as
    it always has."""
    kind = _signature(path)
    found = {"WebP": "WEBP"}.get(kind, kind) if kind in _SUPPORTED_SIGNATURES else None
    formats = (found,) if found else PILLOW_FORMATS
    for name in formats:
        importlib.import_module(f"PIL.{_PLUGINS[name]}")
    return formats


def _signature(path: Path | bytes) -> str:
    """The format a file's (or encoded bytes') first bytes announce, or "" (to tell corrupt from not-an-image)."""
    if isinstance(path, bytes):
        head = path[:8]
    else:
        try:
            with open_regular(path) as handle:
                head = handle.read(8)
        except OSError:
            return ""
    return next((kind for magic, kind in _SIGNATURES if head.startswith(magic)), "")


# Where Pillow's getexif() finds an orientation: an image with none of these is upright, and is not
# asked (getexif builds and parses an Exif object: ~3 us of a ~520 us photo, twice an image).
_ORIENTATION_KEYS = frozenset(("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp"))


def _orientation(image: Image.Image) -> int:
    # (a TIFF is turned upright by Pillow as it loads; an Exif already made, e.g. set by a caller, is read)
    if _ORIENTATION_KEYS.isdisjoint(image.info) and getattr(image, "_exif", None) is None:
        return 1
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF is common in the wild; treat as upright
        return 1


def _upright(image: Image.Image) -> Image.Image:
    if _orientation(image) not in range(2, 9):  # upright already: exif_transpose would copy it whole
        return image
    from PIL import ImageOps  # rotated photos only: with its palette modules, ~1 ms of a cold start

    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF: keep the pixels as stored
        return image


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow mode to "L" or "RGB"."""
    if image.mode == mode:
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = np.asarray(image, dtype=np.float64)
        # 16-bit samples: map 0..65535 onto 0..255. A 32-bit "I" image holding 8-bit data
        # (max <= 255) is kept as is.
        if wide.max(initial=0) > 255:
            wide = wide / 257.0
        image = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(_float_pixels(np.asarray(image)))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "LAB":  # CIELAB (TIFF, some JPEGs): Pillow converts it only through colour management
        image = _lab_to_rgb(image)
    if image.mode == "La":  # premultiplied alpha: Pillow converts it only to LA
        image = image.convert("LA")
    if image.mode in ("LA", "PA", "RGBA", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (ALPHA_BACKGROUND,) * 3 + (255,))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert(mode)


def _lab_to_rgb(image: Image.Image) -> Image.Image:
    from PIL import ImageCms

    transform = ImageCms.buildTransformFromOpenProfiles(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
                                                        "LAB", "RGB")
    return ImageCms.applyTransform(image, transform)


def _array_if_ready(array: np.ndarray, size: tuple[int, int], color: ColorMode) -> np.ndarray | None:
    """The array itself when it already is uint8 pixels of the right shape (the fast path)."""
    channels = 1 if color == "grayscale" else 3
    if array.dtype == np.uint8 and array.shape == (size[0], size[1], channels):
        return array
    if array.dtype == np.uint8 and channels == 1 and array.shape == size:
        return array[:, :, None]
    return None


def _image_from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(
            f"array of shape {array.shape} is not an image: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        )
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise ImageError(f"array of dtype {array.dtype} is not an image")
        array = _float_pixels(array.astype(np.float64))
    return Image.fromarray(np.ascontiguousarray(array))  # uint8 (H,W) / (H,W,3) / (H,W,4): L / RGB / RGBA


def _float_pixels(array: np.ndarray) -> np.ndarray:
    """Raw pixel values (0..255 expected; the model does its own scaling) as uint8, rounded and
    clipped (+-inf become 255 and 0). NaN has no pixel value: refused, as casting it is undefined."""
    if np.isnan(array).any():
        raise ImageError(f"image data of {array.size} values has {int(np.isnan(array).sum())} NaN: not pixels")
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def is_image_file(path: Path) -> bool:
    """True for a visible file with one of the supported image extensions."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
