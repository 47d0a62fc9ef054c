"""The OpenCV JPEG encoder writes Pillow's bytes, metadata included, and steps aside where
it cannot."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from upright.imagefiles import EXIF_ORIENTATION, DecodedImage, encode_image, read_image
from upright.jpegencode import encode_jpeg


def _pillow_jpeg(pixels: np.ndarray, quality: int, **params) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, **params)
    return buffer.getvalue()


def _photo(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    base = (np.sin(xx / 7.0) + np.cos(yy / 5.0)) * 60 + 128
    if len(shape) == 3:
        base = base[:, :, None] + np.arange(shape[2]) * 20
    return np.clip(base + rng.normal(0, 10, shape), 0, 255).astype(np.uint8)


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Maker"  # Make
    exif[0x0132] = "2024:05:06 07:08:09"  # DateTime
    return exif.tobytes()


ICC_SMALL = bytes(range(256)) * 12  # one APP2 segment
ICC_LARGE = bytes(range(256)) * 600  # 153,600 bytes: three segments, as Pillow splits them


@pytest.mark.parametrize("shape", [(48, 64, 3), (37, 29, 3), (50, 41), (1, 1, 3), (1, 300)])
@pytest.mark.parametrize("quality", [1, 50, 95, 100])
def test_the_bytes_are_pillows_for_grey_and_colour_at_any_quality(shape, quality):
    pixels = _photo(shape)
    assert encode_jpeg(pixels, quality, {}) == _pillow_jpeg(pixels, quality)


@pytest.mark.parametrize("metadata", [
    {"dpi": (300.0, 300.0)}, {"dpi": (72.4, 96.6)}, {"dpi": (1.0, 65535.0)},
    {"exif": "exif"}, {"icc_profile": ICC_SMALL}, {"icc_profile": ICC_LARGE},
    {"exif": "exif", "icc_profile": ICC_LARGE, "dpi": (300.0, 150.0)},
], ids=["dpi", "dpi-fractional", "dpi-extremes", "exif", "icc", "icc-three-segments", "all"])
def test_the_bytes_are_pillows_with_metadata(metadata):
    metadata = {k: (_exif() if v == "exif" else v) for k, v in metadata.items()}
    pixels = _photo((40, 56, 3), seed=1)
    ours = encode_jpeg(pixels, 90, metadata)
    assert ours == _pillow_jpeg(pixels, 90, **metadata)
    with Image.open(io.BytesIO(ours)) as back:  # and Pillow reads the metadata back
        if "icc_profile" in metadata:
            assert back.info["icc_profile"] == metadata["icc_profile"]
        if "exif" in metadata:
            assert back.getexif()[0x010F] == "Maker"


@pytest.mark.parametrize("pixels, metadata", [
    (np.zeros((8, 8), np.uint16), {}),  # 16-bit grey: no 16-bit JPEG
    (np.zeros((8, 8, 4), np.uint8), {}),  # RGBA
    (np.zeros((8, 8, 3), np.uint8), {"dpi": (0.2, 0.2)}),  # rounds to 0
    (np.zeros((8, 8, 3), np.uint8), {"dpi": (70000.0, 72.0)}),  # over the JFIF field
    (np.zeros((8, 8, 3), np.uint8), {"exif": b"MM\x00*"}),  # no Exif prefix: Pillow adds one
    (np.zeros((8, 8, 3), np.uint8), {"exif": b"Exif\x00\x00" + bytes(70000)}),  # over a segment
    (np.zeros((8, 8, 3), np.uint8), {"comment": b"hello"}),  # metadata it does not write
])
def test_anything_it_does_not_cover_is_left_to_pillow(pixels, metadata):
    assert encode_jpeg(pixels, 95, metadata) is None


def test_a_corrected_jpeg_is_written_by_it_with_the_files_metadata(tmp_path):
    """The path ``correct`` takes: read a JPEG with EXIF (an orientation), ICC and DPI,
    turn it, encode it: Pillow's bytes for the same pixels and metadata, orientation gone."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    exif[0x010F] = "Maker"
    source = tmp_path / "photo.jpg"
    Image.fromarray(_photo((60, 80, 3), seed=2)).save(
        source, quality=92, exif=exif.tobytes(), icc_profile=ICC_SMALL, dpi=(240, 240))
    decoded = read_image(source)
    turned = np.ascontiguousarray(np.rot90(decoded.pixels))
    data = encode_image(decoded, turned, jpeg_quality=92)
    assert data == _pillow_jpeg(turned, 92, **decoded.metadata)
    with Image.open(io.BytesIO(data)) as back:
        assert back.size == (turned.shape[1], turned.shape[0])
        assert back.info["icc_profile"] == ICC_SMALL and back.info["dpi"] == (240, 240)
        assert back.getexif().get(EXIF_ORIENTATION) is None and back.getexif()[0x010F] == "Maker"


def test_encode_image_takes_this_path_for_plain_jpegs_and_pillows_for_the_rest(monkeypatch):
    import upright.imagefiles as imagefiles

    calls = []

    def recorded(*args):
        calls.append(args[0].shape)
        return encode_jpeg(*args)

    monkeypatch.setattr(imagefiles, "encode_jpeg", recorded)
    pixels = _photo((30, 40, 3))
    assert encode_image(DecodedImage(pixels, "JPEG", "RGB"), pixels) == _pillow_jpeg(pixels, 95)
    assert calls == [(30, 40, 3)]
    # A CMYK JPEG (written in its own mode) and a PNG are Pillow's.
    cmyk = np.zeros((30, 40, 4), np.uint8)
    encode_image(DecodedImage(cmyk, "JPEG", "CMYK"), cmyk)
    encode_image(DecodedImage(pixels, "PNG", "RGB"), pixels)
    assert calls == [(30, 40, 3)]
