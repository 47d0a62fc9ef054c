"""Files damaged inside, not just cut short: a JPEG whose scan holds stray markers must
fail as Pillow fails it, not come out as a grey square marked "rotated"; valid JPEGs
with progressive scans, restart markers or a trailer after the image still take the
fast decode."""

from __future__ import annotations

import io
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from hostile.helpers import correct, digit, report_rows
from upright import imagefiles
from upright.cli import main
from upright.jpegdecode import JpegDamage, decode_jpeg


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
def test_valid_jpegs_take_the_fast_decode_and_decode_as_pillow_does(tmp_path, capfd, variant):
    pixels = _photo(2)
    if variant == "restarts":
        ok, encoded = cv2.imencode(".jpg", pixels[:, :, ::-1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])
        data = encoded.tobytes()
    elif variant == "grey":
        data = _jpeg(pixels[:, :, 0])
    else:
        data = _jpeg(pixels, progressive=variant == "progressive", optimize=variant == "optimised")
    if variant == "trailer":  # what some phones append after the image's end marker
        data += b"\x00\x00MPF trailer \xff\x37 \xff\xd9"
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    with Image.open(path) as opened:
        fast = imagefiles._read_plain_jpeg(path, opened)
        reference = np.asarray(opened.convert(opened.mode))
    assert fast is not None and fast.pixels.shape == reference.shape
    assert np.abs(fast.pixels.astype(int) - reference).max() <= 2  # two IDCTs, same file
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("marker", [0xC4, 0xE1, 0xFE, 0xDB, 0xDA, 0xD9, 0x37])
def test_one_damaged_marker_in_a_scan_fails_with_the_files_name_whichever_it_is(tmp_path, capfd, marker):
    """Two bytes overwritten mid-scan with a marker that may legitimately follow a scan (a
    table, an APP or comment segment, a scan header, the end) or none at all: libjpeg's
    warning comes back as the file's error, never as grey pixels or an unnamed line."""
    data = bytearray(_jpeg(_photo(4)))
    middle = (data.find(b"\xff\xda") + len(data)) // 2
    data[middle:middle + 2] = bytes([0xFF, marker])
    path = tmp_path / "damaged.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(imagefiles.ImageFileError, match="damaged.jpg: corrupt or truncated"):
        imagefiles.read_image(path)
    with pytest.raises(imagefiles.ImageFileError, match="damaged.jpg: corrupt or truncated"):
        imagefiles.read_image(path, min_side=28)  # the prediction's reduced decode too
    assert "Corrupt JPEG" not in capfd.readouterr().err


@pytest.mark.parametrize("damage", ["random", "truncated-with-end", "height-doubled"])
def test_scan_damage_without_a_marker_fails_with_the_files_name(tmp_path, capfd, damage):
    """Damage no marker betrays (found by a hostile test): OpenCV decoded these to garbage or
    grey, warned on stderr without the name, and the file came out "rotated". (Not every
    such damage can be seen: bytes that still decode as valid codes give garbage libjpeg
    cannot tell from a picture.)"""
    import struct

    data = _jpeg(_photo(5))
    start = data.find(b"\xff\xda") + 14  # the scan's data, after its header (3 components)
    middle = (start + len(data) - 2) // 2
    if damage == "random":
        noise = np.random.default_rng(0).integers(0, 255, len(data) - 2 - start, dtype=np.uint8)
        data = data[:start] + bytes(np.where(noise == 0xFF, 0x7F, noise).astype(np.uint8)) + data[-2:]
    elif damage == "truncated-with-end":
        data = data[:middle] + b"\xff\xd9"
    else:
        sof = data.find(b"\xff\xc0")
        data = data[:sof + 5] + struct.pack(">H", 480) + data[sof + 7:]
    path = tmp_path / "damaged.jpg"
    path.write_bytes(data)
    with pytest.raises(imagefiles.ImageFileError, match=r"damaged.jpg: corrupt or truncated image \("):
        imagefiles.read_image(path)
    assert "Corrupt JPEG" not in capfd.readouterr().err


def _cmyk_jpeg() -> bytes:
    rng = np.random.default_rng(4)
    cmyk = np.clip(rng.normal(90, 30, (120, 200, 4)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(cmyk, "CMYK").save(buffer, format="JPEG", quality=90)  # Adobe's inverted CMYK
    return buffer.getvalue()


@pytest.mark.parametrize("min_side", [None, 10])
@pytest.mark.parametrize("damage", ["stray-markers", "zeroed", "truncated-with-end"])
def test_a_damaged_cmyk_jpeg_fails_with_the_files_name(tmp_path, capfd, damage, min_side):
    """Pillow decodes CMYK JPEGs (TurboJPEG's RGB does not) and said nothing of these: the
    file came out "rotated" with grey or garbage where its data was lost."""
    data = _cmyk_jpeg()
    middle = len(data) // 2
    data = {"stray-markers": _damaged(data),
            "zeroed": data[:middle] + bytes(300) + data[middle + 300:],
            "truncated-with-end": data[:middle] + b"\xff\xd9"}[damage]
    path = tmp_path / "damaged.jpg"
    path.write_bytes(data)
    with pytest.raises(imagefiles.ImageFileError, match=r"damaged.jpg: corrupt or truncated image \("):
        imagefiles.read_image(path, min_side=min_side)
    assert "Corrupt JPEG" not in capfd.readouterr().err


def test_a_whole_cmyk_jpeg_still_decodes_as_pillow_does(tmp_path):
    path = tmp_path / "cmyk.jpg"
    path.write_bytes(_cmyk_jpeg())
    decoded = imagefiles.read_image(path)
    with Image.open(path) as reference:
        assert decoded.mode == "CMYK"
        assert np.array_equal(decoded.pixels, np.asarray(reference))
    view = imagefiles.read_image(path, min_side=10)
    assert view.scale == 8 and view.pixels.shape == (15, 25, 4)


def test_a_comment_holding_marker_bytes_is_no_damage_but_the_same_bytes_in_the_scan_are():
    data = _jpeg(_photo(3))
    comment = b"\xff\xfe\x00\x06\xff\x37\xff\x01"
    sos = data.find(b"\xff\xda")
    with_comment = data[:sos] + comment + data[sos:]
    middle = (sos + len(data)) // 2
    stray = data[:middle] + b"\xff\x37" + data[middle:]
    for blob, damaged in ((with_comment, False), (stray, True)):
        try:
            decode_jpeg(np.frombuffer(blob, np.uint8), False, 1, 240, 320)
        except JpegDamage:
            assert damaged
        else:
            assert not damaged


def _with_exif_thumbnail(data: bytes) -> bytes:
    """``data`` with the EXIF segment a camera writes: a Make tag in IFD0 and, in IFD1, a
    small JPEG thumbnail (its own start, scan and end markers inside the segment)."""
    import struct

    thumb = _jpeg(_photo(5)[:32, :32])
    ifd0 = struct.pack(">H", 1) + struct.pack(">HHI4s", 0x010F, 2, 4, b"Cam\0") + struct.pack(">I", 26)
    ifd1 = struct.pack(">H", 2) + struct.pack(">HHII", 0x0201, 4, 1, 56) + struct.pack(
        ">HHII", 0x0202, 4, 1, len(thumb)) + struct.pack(">I", 0)
    payload = b"Exif\0\0" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd0 + ifd1 + thumb
    assert data[2:4] == b"\xff\xe0"  # after the JFIF segment, as cameras place it
    app0_end = 4 + (data[4] << 8 | data[5])
    return data[:app0_end] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[app0_end:]


def test_a_jpeg_with_an_exif_thumbnail_takes_the_fast_decode(tmp_path):
    """The thumbnail's own markers are the EXIF segment's payload: a camera's photo is
    decoded on the fast path (and at a DCT reduction for a view), not sent to Pillow."""
    data = _with_exif_thumbnail(_jpeg(_photo(6)))
    path = tmp_path / "camera.jpg"
    path.write_bytes(data)
    with Image.open(path) as opened:
        assert opened.getexif()[0x010F] == "Cam"
        fast = imagefiles._read_plain_jpeg(path, opened)
        reference = np.asarray(opened.convert("RGB"))
    assert fast is not None and np.abs(fast.pixels.astype(int) - reference).max() <= 2
    view = imagefiles.read_image(path, min_side=28)
    assert view.scale == 8 and view.pixels.shape == (30, 40, 3)


def _restart_jpeg(interval: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", _photo(7)[:, :, ::-1], [cv2.IMWRITE_JPEG_RST_INTERVAL, interval])
    return encoded.tobytes()


def _restart_positions(data: bytes) -> list[int]:
    sos = data.find(b"\xff\xda")
    return [i for i in range(sos, len(data) - 1) if data[i] == 0xFF and 0xD0 <= data[i + 1] <= 0xD7]


@pytest.mark.parametrize("damage", ["restart-without-interval", "restart-out-of-order"])
def test_a_restart_marker_out_of_place_fails_with_the_files_name(model, tmp_path, capfd, damage):
    """Both decoders pass over a restart marker where none may be (libjpeg warns on stderr,
    without the file's name, and decodes garbage or grey): upright names the file, writes
    nothing for it, and goes on with the rest."""
    if damage == "restart-without-interval":
        data = bytearray(_jpeg(_photo(4)))
        middle = (data.find(b"\xff\xda") + len(data)) // 2
        data[middle:middle + 2] = b"\xff\xd0"
    else:
        data = bytearray(_restart_jpeg(4))
        third = _restart_positions(bytes(data))[2]
        data[third + 1] = 0xD5  # RST5 where RST2 is due
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "damaged.jpg").write_bytes(bytes(data))
    (tmp_path / "in" / "good.jpg").write_bytes(_restart_jpeg(4))
    with pytest.raises(imagefiles.ImageFileError, match=r"damaged.jpg: corrupt or truncated image "
                       r"\(Corrupt JPEG data"):
        imagefiles.read_image(tmp_path / "in" / "damaged.jpg")
    status = main(correct(tmp_path / "in", "-o", tmp_path / "out", "--min-confidence", "0"))
    assert status == 1
    rows, _ = report_rows(tmp_path / "out")
    by_name = {r["file"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["damaged.jpg"]["action"] == "failed"
    assert by_name["good.jpg"]["action"] == "rotated"
    assert not (tmp_path / "out" / "damaged.jpg").exists()
    lines = capfd.readouterr().err.splitlines()
    assert any("damaged.jpg" in line for line in lines)
    assert all("damaged.jpg" in line for line in lines if "Corrupt JPEG" in line)


def test_restart_markers_in_order_decode_on_the_fast_path(tmp_path, capfd):
    data = _restart_jpeg(2)
    assert len(_restart_positions(data)) > 8  # the numbers wrap from 7 to 0
    path = tmp_path / "restarts.jpg"
    path.write_bytes(data)
    with Image.open(path) as opened:
        fast = imagefiles._read_plain_jpeg(path, opened)
        reference = np.asarray(opened)
    assert fast is not None and np.abs(fast.pixels.astype(int) - reference).max() <= 2
    assert capfd.readouterr().err == ""


def _png_with_rows(path, width: int, height: int, rows: int, interlace: bool = False) -> None:
    """A grey PNG whose header promises ``height`` rows and whose data holds ``rows``."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, int(interlace))
    data = zlib.compress((b"\0" + b"\xc8" * width) * rows)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))


def test_a_png_whose_data_ends_before_its_last_row_fails(model, tmp_path):
    """Pillow fills the missing rows with black and says nothing."""
    (tmp_path / "in").mkdir()
    _png_with_rows(tmp_path / "in" / "short.png", 200, 200, 50)
    _png_with_rows(tmp_path / "in" / "whole.png", 200, 200, 200)
    assert main(correct(tmp_path / "in", "-o", tmp_path / "out", "--min-confidence", "0")) == 1
    rows, _ = report_rows(tmp_path / "out")
    by_name = {r["file"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["short.png"]["action"] == "failed"
    assert "short.png: corrupt PNG (its image data ends before its last row)" in \
        by_name["short.png"]["error"]
    assert by_name["whole.png"]["action"] != "failed"
    assert not (tmp_path / "out" / "short.png").exists()


def _palette_png(path, colours: int, transparency: bool = False) -> None:
    """A 40x30 palette PNG whose pixels use indices 0-9, with a PLTE of ``colours`` entries."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    indices = (np.arange(30 * 40).reshape(30, 40) % 10).astype(np.uint8)
    rows = b"".join(b"\0" + row.tobytes() for row in indices)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 30, 8, 3, 0, 0, 0))
                     + chunk(b"PLTE", bytes(range(60, 60 + 3 * colours)))
                     + (chunk(b"tRNS", bytes([0, 128])) if transparency else b"")
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("transparency", [False, True])
def test_a_palette_too_short_for_its_pixels_fails_and_a_full_one_reads(tmp_path, transparency):
    """Pillow showed the pixels whose colour the palette lacks black, and the file came out
    "rotated" (found by a hostile test)."""
    short, full = tmp_path / "short.png", tmp_path / "full.png"
    _palette_png(short, 4, transparency)
    _palette_png(full, 10, transparency)
    with pytest.raises(imagefiles.ImageFileError,
                       match=r"short.png: corrupt PNG \(a pixel uses colour index 9, but the palette has 4"):
        imagefiles.read_image(short)
    pixels = imagefiles.read_image(full).pixels
    assert pixels[0, 9, 0] == 60 + 27  # index 9's red, from the palette


@pytest.mark.parametrize("kind", ["grey", "palette", "16-bit", "1-bit", "grey+alpha", "rgb"])
def test_complete_pngs_ending_in_a_black_row_are_read_whole(tmp_path, kind):
    pixels = np.zeros((61, 37), np.uint8)
    pixels[:40] = np.random.default_rng(0).integers(1, 255, (40, 37))  # black from row 40 down
    image = {"grey": Image.fromarray(pixels),
             "palette": Image.fromarray(pixels).convert("P"),
             "16-bit": Image.fromarray(pixels.astype(np.uint16) * 257),
             "1-bit": Image.fromarray(pixels > 128), "grey+alpha": Image.fromarray(np.dstack([pixels] * 2)),
             "rgb": Image.fromarray(np.dstack([pixels] * 3))}[kind]
    image.save(tmp_path / "image.png")
    decoded = imagefiles.read_image(tmp_path / "image.png")
    assert decoded.pixels.shape[:2] == (61, 37)
    first = decoded.pixels if decoded.pixels.ndim == 2 else decoded.pixels[..., 0]
    np.testing.assert_array_equal(first > 0, pixels > (128 if kind == "1-bit" else 0))


def test_an_interlaced_png_cut_short_fails(tmp_path):
    """Its first five passes whole (rows of the widths Adam7 gives them), the last two missing."""
    import struct
    import zlib

    width = height = 64
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4)]
    raw = b"".join((b"\0" + b"\xc8" * -(-(width - x) // dx)) * -(-(height - y) // dy)
                   for x, y, dx, dy in passes)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1)
    (tmp_path / "short.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                         + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    with pytest.raises(imagefiles.ImageFileError, match="ends before its last row"):
        imagefiles.read_image(tmp_path / "short.png")


@pytest.mark.parametrize("depth", [8, 16])
def test_a_complete_interlaced_png_ending_in_black_rows_is_read_whole(tmp_path, depth):
    """Written by hand (Pillow writes no interlaced PNG): Adam7's seven passes, each row
    unfiltered, on an odd size whose last rows are black."""
    import struct
    import zlib

    height, width = 61, 37
    pixels = np.zeros((height, width), np.uint16 if depth == 16 else np.uint8)
    pixels[:45] = np.random.default_rng(2).integers(1, 2 ** depth - 1, (45, width))
    stored = pixels.astype(">u2") if depth == 16 else pixels
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2)]
    raw = b"".join(b"\0" + stored[y, x0::dx].tobytes()
                   for x0, y0, dx, dy in passes if x0 < width for y in range(y0, height, dy))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 1)
    (tmp_path / "interlaced.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                              + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    np.testing.assert_array_equal(imagefiles.read_image(tmp_path / "interlaced.png").pixels, pixels)


def test_a_tiff_whose_directory_pillow_trips_over_is_named_and_skipped_in_a_folder(tmp_path, capsys):
    """Pillow's TIFF plugin meets this damage (a frame's directory broken) with a TypeError
    while counting frames: read_image names the file like any other damage, and a folder
    dataset lists the rest."""
    from upright.data.folder import load_folder

    pixels = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    frames = [Image.fromarray(pixels) for _ in range(3)]
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    data = bytearray(buffer.getvalue())
    data[132] = 138
    bad = tmp_path / "bad.tif"
    bad.write_bytes(bytes(data))
    with pytest.raises(imagefiles.ImageFileError, match=f"^{bad}: corrupt or truncated image"):
        imagefiles.read_image(bad)
    for k in range(4):
        Image.fromarray(pixels).save(tmp_path / f"ok{k}.png")
    for cache in ("on", "off"):
        source = load_folder(str(tmp_path), image_size=28, cache=cache)
        assert len(source.images) == 4 and source.skipped == [f"{bad}: corrupt or truncated image "
                                                                "(Missing dimensions)"]


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_a_damaged_exif_segment_is_read_past_without_an_unnamed_warning(tmp_path, kind):
    """Pillow warns on stderr (no file name) of EXIF it cannot parse; the image is whole,
    so it is corrected, and nothing unattributable is printed."""
    import struct
    import zlib

    broken = b"Exif\0\0MM\0*\0\0\0\x08\0\x05\0\x01"  # five entries promised, none there
    (tmp_path / "in").mkdir()
    if kind == "jpeg":
        data = _jpeg(_photo(8))
        data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(broken) + 2) + broken + data[2:]
        name = "exif.jpg"
    else:
        buffer = io.BytesIO()
        Image.fromarray(_photo(8)).save(buffer, format="PNG")
        png = buffer.getvalue()
        body = broken[6:]
        chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
        data = png[:33] + chunk + png[33:]
        name = "exif.png"
    (tmp_path / "in" / name).write_bytes(data)
    # In a process of its own: pytest records warnings itself, so only a real run shows stderr.
    done = subprocess.run([sys.executable, "-m", "upright", *correct(
        tmp_path / "in", "-o", tmp_path / "out", "--min-confidence", "0")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows, _ = report_rows(tmp_path / "out")
    assert rows[0]["action"] == "rotated"
    with Image.open(tmp_path / "out" / name) as written:
        assert written.size == (320, 240)
    assert "Warning" not in done.stderr and "EXIF" not in done.stderr


@pytest.mark.parametrize("variant", ["jfif-2.01", "stray-byte-in-header", "padding-before-end"])
def test_harmless_warnings_still_decode(tmp_path, variant):
    """Files whose every pixel decodes though libjpeg warns (a later JFIF version, a stray
    byte between header segments, a few padding bytes before the end marker): not refused
    (a hostile test of the strict decoder found the first two refused)."""
    data = _jpeg(_photo(9))
    if variant == "jfif-2.01":
        data = data.replace(b"JFIF\0\x01", b"JFIF\0\x02", 1)
    elif variant == "stray-byte-in-header":
        at = data.index(b"\xff\xdb")
        data = data[:at] + b"\0" + data[at:]
    else:
        data = data[:-2] + b"\0" * 4 + data[-2:]
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    decoded = imagefiles.read_image(path)
    with Image.open(io.BytesIO(_jpeg(_photo(9)))) as original:
        assert np.abs(decoded.pixels.astype(int) - np.asarray(original)).max() <= 2


def test_a_tolerated_warning_does_not_hide_damage_behind_it(tmp_path):
    """Scan parameters changed (a warning of its own) and the scan then cut short: the
    first warning must not wave the file through with its lower half grey."""
    data = _jpeg(_photo(10))
    start = data.find(b"\xff\xda") + 14
    data = data[:start - 3] + b"\x05\x02" + data[start - 1:]
    data = data[:(start + len(data)) // 2] + b"\xff\xd9"
    path = tmp_path / "damaged.jpg"
    path.write_bytes(data)
    with pytest.raises(imagefiles.ImageFileError, match="damaged.jpg: corrupt or truncated"):
        imagefiles.read_image(path)


@pytest.mark.parametrize("damaged", [False, True])
def test_a_jpeg_with_a_huge_trailer_is_read_only_as_far_as_it_can_need(tmp_path, damaged):
    """More than the most a JPEG's data can need after the image (a hostile test found a
    damaged one sent to Pillow this way, which decoded grey in silence): what follows is
    never read, and damage still fails by name."""
    data = _jpeg(_photo(11))
    if damaged:
        data = data[: len(data) // 2] + b"\xff\xd9"
    path = tmp_path / "trailer.jpg"
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(len(data) + (17 << 20) + 320 * 240 * 6)  # a sparse file: zeros, no disk
    if damaged:
        with pytest.raises(imagefiles.ImageFileError, match="trailer.jpg: corrupt or truncated"):
            imagefiles.read_image(path)
    else:
        with Image.open(io.BytesIO(data)) as original:
            assert np.abs(imagefiles.read_image(path).pixels.astype(int) - np.asarray(original)).max() <= 2


def _jpeg_tiff(path, mode: str, rows_per_strip: int = 16):
    rng = np.random.default_rng(6)
    rgb = Image.fromarray(np.clip(rng.normal(120, 30, (120, 160, 3)), 0, 255).astype(np.uint8))
    rgb.convert(mode).save(path, compression="jpeg", tiffinfo={278: rows_per_strip})
    with Image.open(path) as opened:
        return list(opened.tag_v2[273]), list(opened.tag_v2[279])


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
@pytest.mark.parametrize("damage", ["stray-markers", "random", "offset-moved"])
def test_a_jpeg_compressed_tiff_with_a_damaged_strip_fails_with_the_files_name(tmp_path, capfd, mode, damage):
    """libtiff does not pass on libjpeg's warnings: Pillow decoded these to grey or garbage
    in silence, and the file came out "rotated" (found by a hostile test)."""
    import struct

    good = tmp_path / "good.tif"
    offsets, counts = _jpeg_tiff(good, mode)
    data = bytearray(good.read_bytes())
    start, count = offsets[3], counts[3]  # the fourth strip of eight
    if damage == "stray-markers":
        for k in range(start + 200, start + count - 2, 97):
            data[k] = 0xFF
    elif damage == "random":
        data[start + count // 3:start + count // 3 + 200] = np.random.default_rng(1).integers(
            0, 255, 200, dtype=np.uint8).tobytes()
    else:  # the strip's offset (little-endian, in the IFD) moved 50 bytes into its data
        at = bytes(data).index(struct.pack("<I", start))
        data[at:at + 4] = struct.pack("<I", start + 50)
    (tmp_path / "damaged.tif").write_bytes(bytes(data))
    with pytest.raises(imagefiles.ImageFileError, match=r"damaged.tif: corrupt TIFF \(strip 3[: ]"):
        imagefiles.read_image(tmp_path / "damaged.tif")
    assert "JPEG" not in capfd.readouterr().err
    with Image.open(good) as reference:  # the whole file still reads as Pillow reads it
        assert np.array_equal(imagefiles.read_image(good).pixels, np.asarray(reference))
