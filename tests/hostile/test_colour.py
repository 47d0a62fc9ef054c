"""Colour spaces and 16-bit colour (items 4 and 5): the model sees the colours a viewer shows,
the output keeps the input's mode, orientation and metadata."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hostile.helpers import correct, digit, strict_json
from upright.cli import main
from upright.geometry import rotate_image
from upright.pngstream import write_png


def _colour_digit(size: int = 112, angle: float = 35.0) -> np.ndarray:
    """A coloured digit turned by ``angle``: red bar, green blob on black."""
    grey = rotate_image(digit(size), angle)
    colour = np.zeros(grey.shape[:2] + (3,), np.uint8)
    colour[..., 0] = grey
    colour[..., 1] = (grey * 0.6).astype(np.uint8)
    colour[..., 2] = (grey * 0.3).astype(np.uint8)
    return colour


def _ycck_jpeg(path: Path, rgb: np.ndarray) -> None:
    """A YCCK JPEG (as Photoshop writes CMYK): Pillow cannot write one, so its CMYK writer is
    given the YCC components and the Adobe marker's transform byte is set to 2 (YCCK)."""
    ycc = np.asarray(Image.fromarray(255 - rgb).convert("YCbCr"))
    stored = np.dstack([255 - ycc, np.zeros(rgb.shape[:2], np.uint8)])
    buffer = io.BytesIO()
    Image.frombytes("CMYK", rgb.shape[1::-1], stored.tobytes()).save(buffer, format="JPEG", quality=100)
    data = bytearray(buffer.getvalue())
    data[data.find(b"Adobe") + 11] = 2
    path.write_bytes(bytes(data))
    with Image.open(path) as check:  # the file is what it claims
        assert check.mode == "CMYK" and check.info.get("adobe_transform") == 2


def _angles(out: Path) -> dict[str, float]:
    return {Path(r["file"]).name: r["angle"] for r in strict_json(out / "angles.json")}


def _close(a: float, b: float, tolerance: float = 3.0) -> bool:
    return abs((a - b + 180) % 360 - 180) < tolerance


WRITERS = {  # name -> (writes the file from RGB pixels, the mode the output must keep)
    "cmyk.tiff": (lambda p, rgb: Image.fromarray(rgb).convert("CMYK").save(p), "CMYK"),
    "ycck.jpg": (_ycck_jpeg, "CMYK"),
    "lab.tiff": (lambda p, rgb: Image.fromarray(rgb).convert("LAB").save(p), "LAB"),
    "ycbcr.tiff": (lambda p, rgb: Image.fromarray(rgb).convert("YCbCr").save(p), "YCbCr"),
    "grey16.png": (lambda p, rgb: Image.fromarray(
        np.asarray(Image.fromarray(rgb).convert("L")).astype(np.uint16) * 257).save(p), "I;16"),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_item4_every_colour_space_is_predicted_like_its_rgb_twin_and_keeps_its_mode(model, tmp_path, name):
    src = tmp_path / "in"
    src.mkdir()
    rgb = _colour_digit()
    Image.fromarray(rgb).save(src / "twin.png")
    write, mode = WRITERS[name]
    write(src / name, rgb)
    out = tmp_path / "out"
    assert main(correct(src, "--model", model, "-o", out)) == 0
    angles = _angles(out)
    assert abs(angles["twin.png"]) > 20, angles  # the digit is turned: the test can fail
    assert _close(angles[name], angles["twin.png"]), angles
    with Image.open(out / name) as written:
        assert written.mode.startswith(mode[:3]), (name, written.mode)
        written.load()


def _sixteen_bit_png(path: Path, rgb16: np.ndarray, metadata: dict) -> None:
    with open(path, "wb") as f:
        write_png(f, (rgb16.shape[1], rgb16.shape[0]), [rgb16], metadata)


def test_item5_16_bit_colour_with_an_exif_orientation_is_turned_upright_and_keeps_its_metadata(
        model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgb = _colour_digit(angle=35.0)
    Image.fromarray(rgb).save(src / "twin.png")
    # Stored a quarter turn clockwise, with orientation 8 ("turn 90 ccw to view").
    stored = np.rot90(rgb.astype(np.uint16) * 257, -1)
    stored = np.ascontiguousarray(stored[:, :-10])  # not square: sideways is visible in the size
    exif = Image.Exif()
    exif[0x0112] = 8
    exif[0x010F] = "upright test camera"  # Make
    from PIL import ImageCms
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    _sixteen_bit_png(src / "deep.png", stored, {"exif": exif.tobytes(), "dpi": (300.0, 300.0),
                                                "icc_profile": profile})
    with Image.open(src / "deep.png") as check:
        assert check.getexif()[0x0112] == 8
    out = tmp_path / "out"
    assert main(correct(src, "--model", model, "-o", out)) == 0
    angles = _angles(out)
    assert _close(angles["deep.png"], angles["twin.png"]), angles
    with Image.open(out / "deep.png") as written:
        assert written.size == (stored.shape[0], stored.shape[1])  # upright: the turn applied
        assert written.info["icc_profile"] == profile
        assert [round(v) for v in written.info["dpi"]] == [300, 300]
        written_exif = written.getexif()
        assert written_exif.get(0x010F) == "upright test camera"
        assert 0x0112 not in written_exif  # the pixels are upright now
    head = (out / "deep.png").read_bytes()[:26]
    assert head[24] == 16 and head[25] == 2  # still 16-bit RGB


@pytest.mark.parametrize("channels", [3, 4])
def test_item5_16_bit_colour_tiff_with_an_orientation_keeps_16_bits_icc_and_resolution(
        model, tmp_path, channels):
    import tifffile
    from PIL import ImageCms

    src = tmp_path / "in"
    src.mkdir()
    rgb = _colour_digit()
    Image.fromarray(rgb).save(src / "twin.png")
    rgb16 = rgb.astype(np.uint16) * 257
    if channels == 4:
        rgb16 = np.dstack([rgb16, np.full(rgb16.shape[:2], 65535, np.uint16)])
    stored = np.ascontiguousarray(np.rot90(rgb16, -1)[:, :-10])  # orientation 8 turns it back
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tifffile.imwrite(src / "deep.tiff", stored, photometric="rgb", resolution=(200, 200),
                     resolutionunit="INCH", extrasamples=("unassalpha",) if channels == 4 else None,
                     extratags=[(274, "H", 1, 8, True), (34675, "B", len(profile), profile, True)])
    out = tmp_path / "out"
    assert main(correct(src, "--model", model, "-o", out)) == 0
    angles = _angles(out)
    assert _close(angles["deep.tiff"], angles["twin.png"]), angles
    written = tifffile.imread(out / "deep.tiff")
    assert written.dtype == np.uint16 and written.shape == (stored.shape[1], stored.shape[0], channels)
    with Image.open(out / "deep.tiff") as tiff:
        assert [round(v) for v in tiff.info["dpi"]] == [200, 200]
        assert tiff.info["icc_profile"] == profile
        assert tiff.getexif().get(0x0112, 1) == 1  # upright: no turn left to apply


@pytest.mark.parametrize("fill, expected", [("black", (0, 0, 0)), ("white", (255, 255, 255))])
@pytest.mark.parametrize("mode", ["LAB", "YCbCr", "CMYK"])
def test_the_fill_is_the_colour_asked_for_in_every_colour_space(model, tmp_path, mode, fill, expected):
    """Pillow reports LAB's signed a and b plus 128 (getpixel) but stores them as they are:
    a fill taken from getpixel came out saturated blue."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_colour_digit()).convert(mode).save(src / "image.tiff")
    out = tmp_path / "out"
    assert main(correct(src, "--model", model, "-o", out, "--canvas", "expand", "--fill", fill,
                        "--min-confidence", "0")) == 0
    with Image.open(out / "image.tiff") as written:
        assert written.mode == mode
        corner = written.convert("RGB").getpixel((0, 0))
    assert all(abs(c - e) <= 3 for c, e in zip(corner, expected, strict=True)), corner


def test_a_tiffs_descriptive_tags_travel_and_its_layout_tags_do_not(model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    exif = Image.Exif()
    tags = {0x010F: "upright camera", 0x0110: "model 1", 0x0131: "scanner 2", 0x8298: "(c) us"}
    for tag, value in tags.items():
        exif[tag] = value
    exif[0x0112] = 6  # orientation: applied to the pixels, then dropped
    stored = np.rot90(_colour_digit(), -1)  # shown upright after orientation 6
    Image.fromarray(np.ascontiguousarray(stored)).save(src / "scan.tiff", exif=exif.tobytes(),
                                                       compression="tiff_deflate")
    out = tmp_path / "out"
    assert main(correct(src, "--model", model, "-o", out, "--canvas", "expand", "--min-confidence", "0")) == 0
    with Image.open(out / "scan.tiff") as written:
        written.load()
        kept = written.getexif()
        assert written.size[0] > 112  # a new, larger layout, read back whole
    assert {tag: kept.get(tag) for tag in tags} == tags
    assert kept.get(0x0112) in (None, 1)
