"""Damaged TIFFs fail by name (found by a hostile test): Pillow and tifffile left missing
strips black, libtiff never checked a deflate strip's end, and libtiff's own complaints
went to stderr without the file's name while Pillow returned garbage (a fax strip)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from upright import imagefiles


def _picture(width: int = 72, height: int = 48) -> np.ndarray:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 3 % 256], -1)
    return (base + rng.integers(0, 20, base.shape)).clip(0, 255).astype(np.uint8)


def _tiff(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF", **options)
    return buffer.getvalue()


def _with_tag(data: bytes, code: int, value: int) -> bytes:
    """``data`` with the first value of tag ``code`` (SHORT or LONG, stored in its entry or
    out of it) set to ``value``."""
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        tag = tiff.pages[0].tags[code]
        at, form = tag.valueoffset, {3: "<H", 4: "<I"}[int(tag.dtype)]
    changed = bytearray(data)
    struct.pack_into(form, changed, at, value)
    return bytes(changed)


def _segment(data: bytes, n: int = 0) -> tuple[int, int]:
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        page = tiff.pages[0]
        return page.dataoffsets[n], page.databytecounts[n]


def _read_in_a_subprocess(path) -> tuple[str, str]:
    """(what read_image said, its stderr): C libraries write on the file descriptor."""
    code = ("import sys; from upright import imagefiles\n"
            "try:\n    d = imagefiles.read_image(sys.argv[1]); print('read', d.pixels.shape)\n"
            "except imagefiles.ImageFileError as e:\n    print('error', e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          timeout=120)
    return done.stdout.strip(), done.stderr.strip()


def _raw_strips() -> bytes:
    return _tiff(Image.fromarray(_picture()), tiffinfo={278: 4})  # 12 strips of 4 rows


@pytest.mark.parametrize("damage", ["rows-per-strip", "height", "width-of-jpeg-strips"])
def test_a_tiff_whose_strips_do_not_cover_its_size_fails(tmp_path, damage):
    if damage == "rows-per-strip":  # 12 strips of 1 row: 36 rows would be black
        data, expected = _with_tag(_raw_strips(), 278, 1), r"12 strips where its size \(72x48\) needs 48"
    elif damage == "height":
        data = _with_tag(_raw_strips(), 257, 4800)
        expected = r"12 strips where its size \(72x4800\) needs 1200"
    else:  # each JPEG strip is 72 wide: half of a 144-wide image would be black
        data = _with_tag(_tiff(Image.fromarray(_picture()), compression="jpeg"), 256, 144)
        expected = r"strip 0 is 72 pixels wide, not 144"
    path = tmp_path / "damaged.tif"
    path.write_bytes(data)
    with pytest.raises(imagefiles.ImageFileError, match=rf"damaged.tif: corrupt TIFF \({expected}"):
        imagefiles.read_image(path)


def test_a_deflate_strip_that_lost_its_end_fails(tmp_path):
    data = bytearray(_tiff(Image.fromarray(_picture()), compression="tiff_adobe_deflate"))
    start, count = _segment(bytes(data))
    data[start + count // 2:start + count] = bytes(count - count // 2)
    path = tmp_path / "damaged.tif"
    path.write_bytes(bytes(data))
    with pytest.raises(imagefiles.ImageFileError,
                       match=r"damaged.tif: corrupt TIFF \(strip 0: (its deflate data ends|damaged deflate)"):
        imagefiles.read_image(path)


@pytest.mark.skipif(sys.platform != "linux", reason="libtiff's messages are caught on Linux only")
@pytest.mark.parametrize("kind", ["lzw", "fax"])
def test_libtiffs_complaint_names_the_file_and_nothing_unnamed_reaches_stderr(tmp_path, kind):
    if kind == "lzw":
        data = bytearray(_tiff(Image.fromarray(_picture()), compression="tiff_lzw"))
        start, count = _segment(bytes(data))
        at = start + count // 2
        data[at:at + 8] = np.random.default_rng(3).integers(0, 255, 8, dtype=np.uint8).tobytes()
        expected = "Using code not yet in table"
    else:  # a fax strip whose first bytes are lost: Pillow returned garbage without an error
        bits = Image.fromarray(_picture()[:, :, 0] > 128)
        data = bytearray(_tiff(bits, compression="group4"))
        start, _ = _segment(bytes(data))
        data[start:start + 4] = b"\xff" * 4
        expected = "Fax4Decode: "
    path = tmp_path / "damaged.tif"
    path.write_bytes(bytes(data))
    said, stderr = _read_in_a_subprocess(path)
    assert said.startswith(f"error {path}: corrupt TIFF (libtiff: ") and expected in said, said
    assert stderr == ""


def test_a_bad_orientation_value_is_ignored_without_a_word(tmp_path):
    good = _tiff(Image.fromarray(_picture()), compression="tiff_lzw", exif={274: 1})
    path = tmp_path / "odd.tif"
    path.write_bytes(_with_tag(good, 274, 9))
    said, stderr = _read_in_a_subprocess(path)
    assert said == "read (48, 72, 3)" and stderr == ""


@pytest.mark.parametrize("compression", [None, "tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg",
                                         "group4"])
def test_whole_tiffs_still_read_as_pillow_reads_them(tmp_path, compression):
    picture = _picture()
    image = Image.fromarray(picture[:, :, 0] > 128) if compression == "group4" else Image.fromarray(picture)
    path = tmp_path / "whole.tif"
    rows = 16 if compression == "jpeg" else 5  # (libtiff's JPEG strips are whole MCU rows)
    path.write_bytes(_tiff(image, compression=compression, tiffinfo={278: rows}))
    with Image.open(path) as reference:
        expected = np.asarray(reference.convert("L") if compression == "group4" else reference)
    decoded = imagefiles.read_image(path)
    assert np.array_equal(decoded.pixels.reshape(expected.shape), expected)


def test_a_16_bit_colour_tiff_with_its_planes_apart_reads(tmp_path):
    deep = (_picture().astype(np.uint16) * 257)
    path = tmp_path / "planes.tif"
    tifffile.imwrite(path, np.moveaxis(deep, -1, 0), photometric="rgb", planarconfig="separate")
    decoded = imagefiles.read_image(path)
    assert decoded.mode == "RGB;16" and np.array_equal(decoded.pixels, deep)


def test_a_16_bit_colour_tiff_as_tall_as_its_samples_keeps_its_axes(tmp_path):
    """A 3x3 RGB image is (3, 3, 3) either way: the planar layout is read from the file, not
    guessed from the shape (a review found its rows and samples swapped)."""
    deep = (np.arange(27, dtype=np.uint16).reshape(3, 3, 3) * 1000)
    path = tmp_path / "tiny.tif"
    tifffile.imwrite(path, deep, photometric="rgb")
    assert np.array_equal(imagefiles.read_image(path).pixels, deep)


@pytest.mark.skipif(sys.platform != "linux", reason="libtiff's messages are caught on Linux only")
def test_libtiffs_messages_outside_uprights_reads_still_reach_stderr(tmp_path):
    """The handlers are the process's: a program that decodes a TIFF itself, with Pillow,
    after upright read one, still hears libtiff as it did."""
    data = bytearray(_tiff(Image.fromarray(_picture()), compression="tiff_lzw"))
    start, count = _segment(bytes(data))
    data[start + count // 2:start + count // 2 + 8] = np.random.default_rng(3).integers(
        0, 255, 8, dtype=np.uint8).tobytes()
    (tmp_path / "damaged.tif").write_bytes(bytes(data))
    (tmp_path / "whole.tif").write_bytes(_tiff(Image.fromarray(_picture()), compression="tiff_lzw"))
    code = ("import sys; from PIL import Image; from upright import imagefiles\n"
            "imagefiles.read_image(sys.argv[1])\n"
            "try:\n    Image.open(sys.argv[2]).load()\nexcept OSError:\n    pass\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "whole.tif"),
                           str(tmp_path / "damaged.tif")], capture_output=True, text=True, timeout=120)
    assert "Using code not yet in table." in done.stderr
