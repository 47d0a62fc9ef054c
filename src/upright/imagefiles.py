"""Reading and writing real image files: formats, modes, bit depths, EXIF orientation, metadata.

``read_image`` returns the pixels the way the image is meant to be seen (EXIF orientation
applied) as uint8 or uint16 arrays; ``encode_image`` writes new pixels back in the source's
format with its metadata (ICC profile, DPI, EXIF without the now-stale orientation tag).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from upright import tiffmessages
from upright.errors import UserError
from upright.jpegdecode import JpegDamage, JpegNotForTurbo, check_jpeg, decode_jpeg
from upright.jpegencode import encode_jpeg
from upright.pngcheck import EXTRA_DATA, copy_pixel_chunks, has_other_chunks, png_stream_problem
from upright.pngstream import write_png
from upright.prepare import CONVERTED_MODES
from upright.tiffcheck import tiff_problem

# Pillow warns (a UserWarning on stderr, without the file's name) where it skips a damaged
# EXIF or TIFF tag; the image reads all the same, and the tags it could read travel on.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
# tifffile logs what it skips in a 16-bit TIFF (a tag with a bad value) as a warning, which
# Python prints on stderr without the file's name where nothing else handles its log.
logging.getLogger("tifffile").addHandler(logging.NullHandler())

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
# Image files a folder walk lists as skipped rather than passing over in silence.
SKIPPED_SUFFIXES = {".gif": "GIF is not supported (palette colours, often animated)"}
MAX_PIXELS = 150_000_000  # beyond this, a file is treated as a decompression bomb
EXIF_ORIENTATION = 0x0112


class ImageFileError(UserError, ValueError):
    """One file cannot be used; the message starts with the file's path."""


@dataclass
class DecodedImage:
    pixels: np.ndarray  # (H, W) or (H, W, C), uint8 or uint16, RGB(A) channel order
    format: str  # Pillow's format name: PNG, JPEG, ...
    mode: str  # the mode the output is written in
    metadata: dict[str, Any] = field(default_factory=dict)
    # 1: the whole image. 2, 4 or 8: a JPEG decoded at that reduction (DCT scaling), a view
    # to predict from, never to be written.
    scale: int = 1


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(26)
    return head[24] if len(head) >= 25 and head[:8] == b"\x89PNG\r\n\x1a\n" else 8


def _exif_from_header(image: Image.Image) -> Image.Exif:
    """The EXIF a PNG header holds (an eXIf chunk before the pixels, as the PNG spec asks),
    without ``getexif``, which decodes a PNG's whole image to look after them."""
    exif = Image.Exif()
    if image.info.get("exif"):
        exif.load(image.info["exif"])
    return exif


def _metadata(image: Image.Image, exif: Image.Exif | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if image.info.get("icc_profile"):
        meta["icc_profile"] = image.info["icc_profile"]
    if image.info.get("dpi"):
        meta["dpi"] = tuple(float(v) for v in image.info["dpi"])
    exif = image.getexif() if exif is None else exif
    if exif:
        exif.pop(EXIF_ORIENTATION, None)  # the pixels are upright now: the tag would lie
        meta["exif"] = exif.tobytes()
    return meta


def _opencv_read_png(path: Path, shape: tuple[int, ...], dtype: type) -> np.ndarray | None:
    """Decode a PNG (checked by ``_png_fit_for_opencv``) with OpenCV into one array of the
    expected shape, in our channel order (``imread`` without ``dst``, and ``imdecode``,
    hold a second full-size copy while decoding). libpng reads only the pixel chunks (a
    copy of them in a temporary file: upright.pngcheck.copy_pixel_chunks), so it says nothing
    on stderr of ancillary chunks OpenCV does not use. None when the file decodes to
    anything else."""
    bands = shape[2] if len(shape) == 3 else 1
    flags = {1: cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION,
             3: cv2.IMREAD_COLOR_RGB | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION,
             4: cv2.IMREAD_UNCHANGED}[bands]
    copy = None
    try:
        if has_other_chunks(path):
            try:
                handle, copy = tempfile.mkstemp(suffix=".png", prefix="upright-pixels-")
                with os.fdopen(handle, "wb") as f:
                    copy_pixel_chunks(path, f)
            except OSError:  # no room for the copy: libpng reads the file itself (and may warn)
                _remove(copy)
                copy = None
        pixels = cv2.imread(copy or str(path), np.empty(shape, dtype), flags)
    finally:  # (an interruption too: no copy is left behind)
        _remove(copy)
    if pixels is None or pixels.shape != shape or pixels.dtype != dtype:
        return None
    if bands == 4:  # the one mode read unchanged: BGRA
        cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA, dst=pixels)
    return pixels


def _load(path: Path, opened: Image.Image) -> None:
    """Decode the pixels; a TIFF's with libtiff's errors caught (upright.tiffmessages): one
    names the file's damage, even where Pillow goes on without a word (a fax strip's bad
    code words), and none reaches stderr unnamed."""
    if opened.format != "TIFF":
        opened.load()
        return
    with tiffmessages.collected() as messages:
        try:
            opened.load()
        except (OSError, ValueError) as exc:
            if messages and messages.errors:
                raise ImageFileError(f"{path}: corrupt TIFF (libtiff: {messages.errors[0]})") from exc
            raise
    damage = [e for e in (messages.errors if messages else []) if not e.startswith(_TIFF_TAG_MODULES)]
    if damage:
        raise ImageFileError(f"{path}: corrupt TIFF (libtiff: {damage[0]})")


# libtiff's complaints about a tag's value while it reads the directory (an Orientation of
# 9, a wrong count): where the pixels then decode, they are whole, and the tag is ignored.
_TIFF_TAG_MODULES = ("_TIFFVSetField", "TIFFFetchNormalTag", "TIFFReadDirectory", "TIFFReadCustomDirectory")


def _remove(path: str | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _png_fit_for_opencv(path: Path) -> bool:
    """Whether a PNG's image data fills its rows exactly (a problem is an ImageFileError:
    OpenCV hands back our array uninitialised where libpng gives up) and nothing follows
    it (libpng would warn on stderr: such a file is for Pillow)."""
    problem = png_stream_problem(path, extra_data_ok=False)
    if problem and problem != EXTRA_DATA:
        raise ImageFileError(f"{path}: corrupt PNG ({problem})")
    return problem is None


def _png_rows_complete(path: Path, opened: Image.Image) -> bool:
    """Whether a PNG Pillow decoded had data for every row its header promises: Pillow
    stops quietly where the data stops and leaves the rest black, so a plain PNG whose last
    row is not all black is complete, and only the others (and interlaced ones) have their
    data inflated and counted."""
    interlaced = opened.info.get("interlace", 0)
    if not interlaced and np.asarray(opened.crop((0, opened.height - 1, opened.width, opened.height))).any():
        return True
    return png_stream_problem(path) is None


def _read_16bit_colour(path: Path, opened: Image.Image) -> np.ndarray:
    """Pillow reduces 16-bit colour to 8 bits; OpenCV (PNG) and tifffile (TIFF: OpenCV
    cannot read one with an orientation tag) keep them. The stored orientation is returned."""
    shape = (opened.height, opened.width, 4 if opened.mode == "RGBA" else 3)
    if opened.format == "TIFF":
        import tifffile

        try:
            with tifffile.TiffFile(path) as tiff:
                page = tiff.pages[0]
                pixels = page.asarray()
                planes_apart = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
        except Exception as exc:  # noqa: BLE001 - a codec it lacks, or damage: one line
            raise ImageFileError(f"{path}: cannot decode 16-bit colour TIFF ({exc})") from exc
        if planes_apart and pixels.ndim == 3:  # (samples, rows, columns)
            pixels = np.ascontiguousarray(np.moveaxis(pixels, 0, -1))
    elif not _png_fit_for_opencv(path):
        raise ImageFileError(f"{path}: corrupt PNG ({EXTRA_DATA})")
    else:
        pixels = _opencv_read_png(path, shape, np.uint16)
    # (Pillow gives a TIFF with a quarter-turn orientation its turned size: compare channels.)
    if pixels is None or pixels.shape[2:] != shape[2:] or pixels.dtype != np.uint16:
        raise ImageFileError(f"{path}: cannot decode 16-bit colour image")
    return pixels


def _check_palette_indices(path: Path, opened: Image.Image) -> None:
    """A palette image whose pixels name colours its palette lacks is damaged (the PNG
    spec calls it an error); Pillow would show those pixels black."""
    if opened.mode not in ("P", "PA"):
        return
    palette = opened.getpalette() or []
    colours = len(palette) // 3
    if colours == 0:
        return  # (a palette PNG without one fails in pngcheck; other formats keep theirs)
    indices = np.asarray(opened.getchannel(0) if opened.mode == "PA" else opened)
    highest = int(indices.max()) if indices.size else 0
    if highest >= colours:
        raise ImageFileError(f"{path}: corrupt {opened.format} (a pixel uses colour index {highest}, "
                             f"but the palette has {colours} colours)")


# A PNG whose pixels take more than this is decoded by OpenCV straight into one array
# (Pillow holds its own copy while numpy makes another), and written in strips.
BIG_BYTES = 64 << 20


def _read_big_png(path: Path, opened: Image.Image) -> DecodedImage | None:
    """Big 8-bit grey, RGB or RGBA PNGs, decoded once into the array the rest uses."""
    bands = {"L": 1, "RGB": 3, "RGBA": 4}.get(opened.mode)
    if opened.format != "PNG" or bands is None or _png_bit_depth(path) != 8:
        return None
    if opened.width * opened.height * bands < BIG_BYTES or not _png_fit_for_opencv(path):
        return None
    exif = _exif_from_header(opened)
    orientation = exif.get(EXIF_ORIENTATION, 1)
    meta = _metadata(opened, exif)
    shape = (opened.height, opened.width) + ((bands,) if bands > 1 else ())
    pixels = _opencv_read_png(path, shape, np.uint8)
    if pixels is None:
        return None  # palette, transparency key, damage...: Pillow's slower path decides
    return DecodedImage(_apply_orientation(pixels, orientation), "PNG", opened.mode, meta)


# The reductions libjpeg decodes directly (its DCT scaling), largest first.
JPEG_SCALES = (8, 4, 2)


def jpeg_scale(width: int, height: int, min_side: int | None) -> int:
    """The largest DCT reduction (8, 4, 2; else 1) that keeps the short side >= ``min_side``."""
    if not min_side:
        return 1
    short = min(width, height)
    return next((s for s in JPEG_SCALES if short // s >= min_side), 1)


def _reduced(size: int, scale: int) -> int:
    return -(-size // scale)  # libjpeg rounds a scaled side up


def _read_plain_jpeg(path: Path, opened: Image.Image, scale: int = 1) -> DecodedImage | None:
    """Grey or RGB JPEGs, the common case, decoded by libjpeg-turbo through TurboJPEG (no
    Python in the loop, the GIL released throughout: about twice as fast as Pillow here),
    which reports damage that OpenCV and Pillow decode to grey in silence
    (upright.jpegdecode); ``scale`` > 1 decodes at that DCT reduction. Anything else is
    left to Pillow (a CMYK JPEG once TurboJPEG has found its data whole)."""
    if opened.format != "JPEG":
        return None
    # A JPEG's data cannot sensibly exceed twice its raw pixels plus metadata: no more is
    # read (a small JPEG with gigabytes after it; libjpeg stops at the image's end).
    limit = opened.width * opened.height * len(opened.getbands()) * 2 + (16 << 20)
    data = np.fromfile(path, dtype=np.uint8, count=limit)
    if opened.mode == "CMYK":
        # Pillow decodes CMYK (Adobe's inverted kind too) but says nothing of damage in the
        # scan: TurboJPEG judges the data first, Pillow then gives the pixels.
        try:
            check_jpeg(data, "CMYK", opened.height, opened.width)
        except JpegNotForTurbo:
            pass
        except JpegDamage as exc:
            raise ImageFileError(f"{path}: corrupt or truncated image ({exc})") from None
        return None
    if opened.mode not in ("L", "RGB"):
        return None
    height, width = _reduced(opened.height, scale), _reduced(opened.width, scale)
    try:
        pixels = decode_jpeg(data, opened.mode == "L", scale, height, width)
    except JpegNotForTurbo:
        return None
    except JpegDamage as exc:
        raise ImageFileError(f"{path}: corrupt or truncated image ({exc})") from None
    orientation = opened.getexif().get(EXIF_ORIENTATION, 1)
    return DecodedImage(_apply_orientation(pixels, orientation), "JPEG", opened.mode,
                        _metadata(opened), scale)


def decoded_bytes(path: str | Path, min_side: int | None = None) -> int:
    """What ``read_image`` (with the same ``min_side``) will hold for this file, from its
    header alone (0 when the header cannot be read: the decode then fails, and costs nothing)."""
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            if opened.format == "JPEG":
                scale = jpeg_scale(width, height, min_side)
                width, height = _reduced(width, scale), _reduced(height, scale)
            depth = 2 if opened.mode.startswith("I") or (
                opened.format == "PNG" and _png_bit_depth(Path(path)) == 16) else 1
            return width * height * len(opened.getbands()) * depth
    except Exception:  # noqa: BLE001 - any failure here is read_image's to report
        return 0


def displayed_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as it is shown (after its EXIF orientation), from
    its header alone."""
    with Image.open(path) as opened:
        width, height = opened.size
        quarter = opened.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    return (height, width) if quarter else (width, height)


@contextlib.contextmanager
def _named_errors(path: Path) -> Iterator[None]:
    """Any failure to read ``path`` as an ImageFileError whose message names the file."""
    try:
        yield
    except ImageFileError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageFileError(f"{path}: too many pixels (decompression bomb: {exc})") from exc
    except (Image.UnidentifiedImageError, SyntaxError) as exc:
        raise ImageFileError(f"{path}: not an image file Pillow can identify") from exc
    except (PermissionError, FileNotFoundError, IsADirectoryError) as exc:  # the file, not its data
        problem = {PermissionError: "cannot be read (permission denied)", FileNotFoundError: "no such file",
                   IsADirectoryError: "a folder, not an image file"}[type(exc)]
        raise ImageFileError(f"{path}: {problem}") from exc
    # (Pillow's plugins meet some damage with a TypeError, KeyError or IndexError: a broken
    # TIFF directory, while counting its frames.)
    except (OSError, ValueError, struct.error, EOFError, TypeError, KeyError, IndexError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageFileError(f"{path}: corrupt or truncated image ({text})") from exc


@contextlib.contextmanager
def _opened(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """The file opened by Pillow (its header read, nothing decoded) once the header shows
    it is one image, in a format upright reads, of at most ``max_pixels``."""
    if path.stat().st_size == 0:
        raise ImageFileError(f"{path}: empty file (0 bytes)")
    with Image.open(path) as opened:
        width, height = opened.size
        if width * height > max_pixels:
            raise ImageFileError(f"{path}: {width}x{height} pixels is over the limit of "
                                 f"{max_pixels:,} (decompression bomb?)")
        if opened.format not in FORMATS:
            raise ImageFileError(f"{path}: unsupported format {opened.format}")
        frames = getattr(opened, "n_frames", 1)
        if frames > 1:  # one turned frame would silently drop the others
            raise ImageFileError(f"{path}: {frames} frames (multi-page or animated "
                                 f"{opened.format}); only single-frame images are corrected")
        yield opened


def identify(path: str | Path, max_pixels: int = MAX_PIXELS) -> None:
    """Raise the ImageFileError ``read_image`` would where the file's header alone shows it
    cannot be read (no image, empty, unsupported, several frames, too many pixels); nothing
    is decoded, so damaged pixels pass."""
    path = Path(path)
    with _named_errors(path), _opened(path, max_pixels):
        pass


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS, min_side: int | None = None
               ) -> DecodedImage:
    """Decode ``path``; every failure is an ImageFileError whose message names the file.

    ``min_side``: only a view to predict from is needed, with a short side of at least this
    many pixels. A JPEG is then decoded at the largest DCT reduction that keeps it (1/2, 1/4
    or 1/8: libjpeg skips most of the inverse DCT and all the full-size pixels; the result's
    ``scale`` says which); other formats are decoded whole, as without it. The pixel limit
    applies to the file's full size either way."""
    path = Path(path)
    with _named_errors(path), _opened(path, max_pixels) as opened:
        width, height = opened.size
        scale = jpeg_scale(width, height, min_side) if opened.format == "JPEG" else 1
        # Every PNG's chunks are checked first (upright.pngcheck), whichever decoder reads it.
        problem = png_stream_problem(path, inflate_data=False) if opened.format == "PNG" else None
        if problem:
            raise ImageFileError(f"{path}: corrupt PNG ({problem})")
        # A TIFF's strips must cover its size, and a JPEG-compressed one's are judged first
        # (upright.tiffcheck): the decoders leave what is missing black, and libtiff does not
        # pass on libjpeg's warnings.
        problem = tiff_problem(path, opened.tag_v2) if opened.format == "TIFF" else None
        if problem:
            raise ImageFileError(f"{path}: corrupt TIFF ({problem})")
        fast = _read_plain_jpeg(path, opened, scale)
        if fast is not None:
            return fast
        big = _read_big_png(path, opened)
        if big is not None:
            return big
        # Read before load (Pillow turns a TIFF as it loads it and drops the tag) and
        # before _metadata (which drops it from the image's cached EXIF).
        orientation = opened.getexif().get(EXIF_ORIENTATION, 1)
        if scale > 1:  # CMYK, YCCK, damaged...: Pillow's decoder takes the same reduction
            # (asking for the floor of each side makes Pillow choose exactly ``scale``).
            drafted = opened.draft(opened.mode, (width // scale, height // scale))
            scale = round(width / drafted[1][2]) if drafted else 1
        _load(path, opened)
        fmt = opened.format
        bits = opened.tag_v2.get(258, (8,)) if fmt == "TIFF" else None
        image = ImageOps.exif_transpose(opened) or opened
        meta = _metadata(opened)
        sixteen_colour = image.mode in ("RGB", "RGBA") and (
            (fmt == "PNG" and _png_bit_depth(path) == 16)
            or (fmt == "TIFF" and max(bits if isinstance(bits, tuple) else (bits,)) == 16))
        if sixteen_colour:
            pixels = _read_16bit_colour(path, opened)
            pixels = _apply_orientation(pixels, orientation)
            return DecodedImage(pixels, fmt, "RGB;16", meta)
        if fmt == "PNG" and not _png_rows_complete(path, opened):
            raise ImageFileError(f"{path}: corrupt PNG (its image data ends before its last row)")
        _check_palette_indices(path, opened)
        decoded = from_pil(image, fmt, meta, path)
        decoded.scale = scale
        return decoded


# EXIF orientation -> the array operation that makes the image upright (as Pillow's exif_transpose).
_ORIENT = {
    2: lambda p: p[:, ::-1],
    3: lambda p: p[::-1, ::-1],
    4: lambda p: p[::-1],
    5: lambda p: p.swapaxes(0, 1),
    6: lambda p: np.rot90(p, -1),
    7: lambda p: p[::-1, ::-1].swapaxes(0, 1),
    8: lambda p: np.rot90(p, 1),
}


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    return np.ascontiguousarray(_ORIENT[orientation](pixels)) if orientation in _ORIENT else pixels


def from_pil(image: Image.Image, fmt: str = "PNG", meta: dict[str, Any] | None = None,
             path: Path | str = "image") -> DecodedImage:
    """A loaded Pillow image as pixels in a mode upright works in (palette and 1-bit made
    colour or grey, 16- and 32-bit grey kept as 16 bits)."""
    meta = {} if meta is None else meta
    mode = image.mode
    if mode == "P":  # palette indices cannot be interpolated: rotate the colours
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "1":
        image = image.convert("L")
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return DecodedImage(np.asarray(image).astype(np.uint16), fmt, "I;16", meta)
    elif mode == "I":  # 32-bit grey (often 16-bit PNG data): keep 16 bits
        data = np.asarray(image)
        return DecodedImage(np.clip(data, 0, 65535).astype(np.uint16), fmt, "I;16", meta)
    if image.mode not in ("L", "LA", "RGB", "RGBA") + CONVERTED_MODES:
        raise ImageFileError(f"{path}: unsupported image mode {mode}")
    return DecodedImage(np.asarray(image), fmt, image.mode, meta)


# The TIFF tags that describe the image rather than lay it out: document and page name,
# description, make, model, software, date and time, artist, host computer, copyright.
TIFF_DESCRIPTIVE_TAGS = (269, 270, 271, 272, 285, 305, 306, 315, 316, 33432)


def _tiff_descriptive_tags(exif: bytes | None) -> bytes | None:
    if not exif:
        return None
    source, kept = Image.Exif(), Image.Exif()
    source.load(exif)
    for tag in TIFF_DESCRIPTIVE_TAGS:
        if isinstance(source.get(tag), str):
            kept[tag] = source[tag]
    return kept.tobytes() if len(kept) else None


def encode_image(decoded: DecodedImage, pixels: np.ndarray, jpeg_quality: int = 95) -> bytes:
    """Encode new pixels in the decoded image's format and mode, with its metadata."""
    if decoded.scale != 1:  # a reduced view would write a thumbnail in place of the photo
        raise ValueError("a prediction view (a reduced decode) is never written")
    fmt = decoded.format
    if decoded.mode == "RGB;16" and fmt == "PNG":  # Pillow has no 16-bit colour mode
        buffer = io.BytesIO()
        write_png(buffer, (pixels.shape[1], pixels.shape[0]), [pixels], decoded.metadata)
        return buffer.getvalue()
    if decoded.mode == "RGB;16":  # 16-bit colour TIFF: tifffile writes it, with ICC and DPI
        import tifffile

        buffer = io.BytesIO()
        icc = decoded.metadata.get("icc_profile")
        dpi = decoded.metadata.get("dpi")
        tifffile.imwrite(buffer, pixels, photometric="rgb", compression="zlib",
                         extrasamples=("unassalpha",) if pixels.shape[2] == 4 else None,
                         resolution=tuple(dpi) if dpi else None,
                         resolutionunit="INCH" if dpi else None,
                         extratags=[(34675, "B", len(icc), icc, True)] if icc else None)
        return buffer.getvalue()
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if fmt == "JPEG" and decoded.mode in ("L", "RGB"):  # the common case, without the GIL
        data = encode_jpeg(pixels, jpeg_quality, decoded.metadata)
        if data is not None:
            return data
    if decoded.mode in CONVERTED_MODES:
        image = Image.frombytes(decoded.mode, (pixels.shape[1], pixels.shape[0]),
                                np.ascontiguousarray(pixels).tobytes())
    else:
        image = Image.fromarray(pixels)
    params: dict[str, Any] = {k: v for k, v in decoded.metadata.items()
                              if k in ("icc_profile", "dpi", "exif")}
    if fmt == "JPEG":
        params.update(quality=jpeg_quality)
        if image.mode not in ("L", "RGB", "CMYK", "YCbCr"):
            image = image.convert("RGB")
    elif fmt == "WEBP":
        params.update(quality=jpeg_quality)
    elif fmt == "PNG":
        params.update(compress_level=3)  # lossless at any level; 3 is fast and small enough
    elif fmt == "TIFF":
        # A TIFF's "EXIF" is its own IFD (width, strip offsets...): copying it whole would
        # corrupt the new file, and libtiff refuses an Exif sub-IFD; its descriptive tags travel.
        descriptive = _tiff_descriptive_tags(params.pop("exif", None))
        if descriptive is not None:
            params["exif"] = descriptive
        if image.mode != "YCbCr":  # libtiff would read a compressed YCbCr TIFF back as RGB
            params.update(compression="tiff_deflate")
    elif fmt == "BMP":
        params = {"dpi": params["dpi"]} if "dpi" in params else {}
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()
