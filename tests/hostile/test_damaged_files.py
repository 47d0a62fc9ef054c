"""Files damaged inside, not just cut short: a JPEG whose scan holds stray markers must
fail as Pillow fails it, not come out as a grey square marked "rotated"; valid JPEGs
with progressive scans, restart markers or a trailer after the image still take the
fast decode."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from hostile.helpers import correct, digit, report_rows
from upright import imagefiles
from upright.cli import main


def _photo(seed: int = 0) -> np.ndarray:
    """A 240x320 colour image with a digit-like shape on a noisy background."""
    rng = np.random.default_rng(seed)
    shape = cv2.resize(digit(), (160, 160), interpolation=cv2.INTER_NEAREST)
    base = rng.normal(60, 12, (240, 320, 3))
    base[40:200, 80:240] += shape[:, :, None] * 0.7
    return np.clip(base, 0, 255).astype(np.uint8)


def _jpeg(pixels: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def _damaged(data: bytes) -> bytes:
    """Every 97th byte of the scan after its first 400 made 0xFF: stray markers, as a bad
    disk or a bad transfer leaves them."""
    damaged = bytearray(data)
    start = data.find(b"\xff\xda")
    for k in range(start + 400, len(damaged) - 2, 97):
        damaged[k] = 0xFF if damaged[k] != 0xFF else 0
    return bytes(damaged)


def test_a_jpeg_with_stray_markers_in_its_scan_fails_and_writes_nothing(model, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "damaged.jpg").write_bytes(_damaged(_jpeg(_photo())))
    (tmp_path / "in" / "good.jpg").write_bytes(_jpeg(_photo(1)))
    status = main(correct(tmp_path / "in", "-o", tmp_path / "out", "--min-confidence", "0"))
    assert status == 1
    rows, _ = report_rows(tmp_path / "out")
    by_name = {r["file"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["damaged.jpg"]["action"] == "failed"
    assert "damaged.jpg: corrupt or truncated image" in by_name["damaged.jpg"]["error"]
    assert by_name["good.jpg"]["action"] == "rotated"
    assert not (tmp_path / "out" / "damaged.jpg").exists()
    assert "damaged.jpg" in capsys.readouterr().err


@pytest.mark.parametrize("variant", ["baseline", "progressive", "optimised", "restarts", "trailer",
                                     "grey"])
def test_valid_jpegs_pass_the_marker_check_and_decode_as_pillow_does(tmp_path, variant):
    pixels = _photo(2)
    if variant == "restarts":
        ok, encoded = cv2.imencode(".jpg", pixels[:, :, ::-1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])
        data = encoded.tobytes()
    elif variant == "grey":
        data = _jpeg(pixels[:, :, 0])
    else:
        data = _jpeg(pixels, progressive=variant == "progressive", optimize=variant == "optimised")
    if variant == "trailer":  # what some phones append after the image's end marker (the check
        # stops there: bytes that would be damage inside a scan are none of its business)
        data += b"\x00\x00MPF trailer \xff\x37 \xff\xd9"
    assert imagefiles._scan_markers_valid(np.frombuffer(data, np.uint8))
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    with Image.open(path) as opened:
        fast = imagefiles._read_plain_jpeg(path, opened)
        reference = np.asarray(opened.convert(opened.mode))
    assert fast is not None and fast.pixels.shape == reference.shape
    assert np.abs(fast.pixels.astype(int) - reference).max() <= 2  # two IDCTs, same file


def test_the_marker_check_refuses_a_stray_marker_but_skips_segment_payloads():
    data = _jpeg(_photo(3))
    assert imagefiles._scan_markers_valid(np.frombuffer(data, np.uint8))
    middle = (data.find(b"\xff\xda") + len(data)) // 2
    stray = data[:middle] + b"\xff\x37" + data[middle:]
    assert not imagefiles._scan_markers_valid(np.frombuffer(stray, np.uint8))
    # A comment segment whose payload holds the same two bytes is no damage.
    comment = b"\xff\xfe\x00\x06\xff\x37\xff\x01"
    sos = data.find(b"\xff\xda")
    with_comment = data[:sos] + comment + data[sos:]
    assert imagefiles._scan_markers_valid(np.frombuffer(with_comment, np.uint8))
