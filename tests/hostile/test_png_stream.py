"""PNGs that OpenCV decodes into upright's own array (16-bit colour, big ones) are checked
whole first: where libpng gives up, OpenCV hands back the array uninitialised (an output
"rotated" from whatever memory held) and libpng's complaint has no file name."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from hostile.helpers import correct, report_rows
from upright import imagefiles
from upright.cli import main
from upright.pngcheck import png_stream_problem


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png16(path, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((48, 64, 3)) * 65535).astype(np.uint16)
    pixels[10:30, 20:30] = 60000
    cv2.imwrite(str(path), pixels)
    return path.read_bytes()


def _damaged(png: bytes, damage: str) -> bytes:
    iend = png.rindex(b"IEND") - 4
    if damage == "unknown-critical-chunk":
        return png[:33] + _chunk(b"ABCD", b"xx") + png[33:]
    if damage == "truncated":
        return png[: len(png) // 2]
    if damage == "idat-crc":
        at = png.index(b"IDAT") + 20
        return png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1:]
    if damage == "extra-data":  # a second zlib stream's worth after the image data
        return png[:iend] + _chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png[iend:]
    if damage == "no-end-chunk":
        return png[:iend]
    if damage == "header-compression-1":  # with its CRC made right: only the values are wrong
        header = bytearray(png[16:29])
        header[10] = 1
        return png[:8] + _chunk(b"IHDR", bytes(header)) + png[33:]
    raise ValueError(damage)


DAMAGES = ["unknown-critical-chunk", "truncated", "idat-crc", "extra-data", "no-end-chunk",
           "header-compression-1"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_16_bit_colour_png_fails_with_its_name_and_writes_nothing(model, tmp_path, capfd, damage):
    (tmp_path / "in").mkdir()
    good = _png16(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "damaged.png").write_bytes(_damaged(good, damage))
    assert png_stream_problem(tmp_path / "in" / "good.png") is None
    with pytest.raises(imagefiles.ImageFileError, match=r"damaged.png: corrupt|damaged.png: .*truncated"):
        imagefiles.read_image(tmp_path / "in" / "damaged.png")
    status = main(correct(tmp_path / "in", "-o", tmp_path / "out", "--min-confidence", "0"))
    assert status == 1
    rows, _ = report_rows(tmp_path / "out")
    by_name = {r["file"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["damaged.png"]["action"] == "failed" and by_name["good.png"]["action"] == "rotated"
    assert not (tmp_path / "out" / "damaged.png").exists()
    err = capfd.readouterr().err
    assert "damaged.png" in err and "libpng" not in err


def test_a_good_16_bit_png_keeps_its_16_bits(tmp_path):
    _png16(tmp_path / "deep.png")
    decoded = imagefiles.read_image(tmp_path / "deep.png")
    reference = cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert decoded.mode == "RGB;16" and np.array_equal(decoded.pixels, reference)


@pytest.mark.parametrize("damage", ["unknown-critical-chunk", "idat-crc"])
def test_a_damaged_big_png_fails_instead_of_coming_back_as_memory(tmp_path, monkeypatch, damage):
    """The big-PNG path (made small here by lowering its threshold) checks the same way."""
    monkeypatch.setattr(imagefiles, "BIG_BYTES", 1000)
    pixels = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "big.png"), pixels[:, :, ::-1])
    good = imagefiles.read_image(tmp_path / "big.png")
    assert np.array_equal(good.pixels, pixels)
    (tmp_path / "damaged.png").write_bytes(_damaged((tmp_path / "big.png").read_bytes(), damage))
    with pytest.raises(imagefiles.ImageFileError, match="damaged.png: corrupt PNG"):
        imagefiles.read_image(tmp_path / "damaged.png")


# Ancillary chunks libpng parses and warns of (on stderr, without the file's name) when
# malformed; OpenCV uses none of them, and Pillow reads past them.
MALFORMED_ANCILLARY = {"bKGD-1-byte": _chunk(b"bKGD", b"\x01"),
                       "iCCP-too-short": _chunk(b"iCCP", b"x\0\0\x01"),
                       "sBIT-0": _chunk(b"sBIT", b"\0\0\0"),
                       "tIME-short": _chunk(b"tIME", b"\x07")}


@pytest.mark.parametrize("kind", ["16-bit", "big"])
@pytest.mark.parametrize("chunk", sorted(MALFORMED_ANCILLARY))
def test_a_malformed_ancillary_chunk_leaves_the_pixels_and_stderr_alone(
        tmp_path, capfd, monkeypatch, kind, chunk):
    """Found by a hostile test: libpng's unnamed "libpng warning: bKGD: invalid" lines."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    if kind == "big":  # the big-PNG path, made small here by lowering its threshold
        monkeypatch.setattr(imagefiles, "BIG_BYTES", 1000)
        rgb = np.random.default_rng(2).integers(0, 255, (60, 80, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / "plain.png"), rgb[:, :, ::-1])
    else:
        _png16(tmp_path / "plain.png")
    plain = (tmp_path / "plain.png").read_bytes()
    (tmp_path / "odd.png").write_bytes(plain[:33] + MALFORMED_ANCILLARY[chunk] + plain[33:])
    capfd.readouterr()
    expected = imagefiles.read_image(tmp_path / "plain.png")
    decoded = imagefiles.read_image(tmp_path / "odd.png")
    assert decoded.mode == expected.mode and np.array_equal(decoded.pixels, expected.pixels)
    assert "libpng" not in capfd.readouterr().err
    assert not list((tmp_path / "scratch").iterdir())  # the pixel chunks' copy is gone
