"""Correction on real files of every format and mode, bad files included (issue: correct real files)."""

import csv
import hashlib
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from upright.cli import main
from upright.geometry import largest_upright_rectangle, rotation_matrix
from upright.imagefiles import EXIF_ORIENTATION


def _huge_png_header(path, width=100_000, height=100_000):
    """A tiny file whose PNG header claims a gigantic image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))


def _picture(h, w, channels=3, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    img = np.zeros((h, w, channels), dtype)
    img[: h // 3] = (rng.random(channels) * top * 0.5 + top * 0.5).astype(dtype)
    img[h // 2:, w // 4: 3 * w // 4] = (rng.random(channels) * top * 0.4).astype(dtype)
    return img[:, :, 0] if channels == 1 else img




@pytest.fixture
def mixed_folder(tmp_path):
    root = tmp_path / "in"
    (root / "deep" / "er").mkdir(parents=True)
    Image.fromarray(_picture(40, 60, 1)).save(root / "grey.png")
    Image.fromarray(_picture(50, 30)).save(root / "rgb.png")
    Image.fromarray(_picture(32, 48, 4)).save(root / "deep" / "rgba.png")
    Image.fromarray(_picture(36, 36)).convert("P", palette=Image.ADAPTIVE).save(root / "palette.png")
    Image.fromarray(_picture(30, 44, 1, np.uint16)).save(root / "grey16.png")
    import cv2

    cv2.imwrite(str(root / "rgb16.png"), _picture(28, 40, 3, np.uint16))
    Image.fromarray(_picture(48, 64)).save(root / "photo.jpg", quality=90)
    Image.fromarray(_picture(48, 64, 1)).save(root / "deep" / "er" / "grey.jpg")
    Image.fromarray(_picture(40, 40)).save(root / "bitmap.bmp")
    Image.fromarray(_picture(44, 28)).save(root / "scan.tiff")
    Image.fromarray(_picture(30, 50, 1, np.uint16)).save(root / "scan16.tif")
    Image.fromarray(_picture(52, 36)).save(root / "web.webp")
    # EXIF says "rotate 90 CW to display": stored 64 wide x 32 high, shown 32 x 64.
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(_picture(32, 64)).save(root / "exif.jpg", exif=exif.tobytes())
    # Bad files.
    _huge_png_header(root / "bomb.png")
    full = (root / "photo.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 3])
    (root / "text.png").write_text("this is not a PNG")
    (root / "empty.jpg").write_bytes(b"")
    return root


BAD = {"bomb.png": "pixels", "truncated.jpg": "truncated", "text.png": "not an image",
       "empty.jpg": "empty"}


def _digests(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def _displayed_size(path):
    with Image.open(path) as img:
        w, h = img.size
        return (h, w) if img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8) else (w, h)


@pytest.mark.parametrize("canvas", ["same", "expand", "crop"])
def test_every_format_comes_out_right_and_bad_files_are_reported(tiny_run, mixed_folder, tmp_path,
                                                                 canvas):
    before = _digests(mixed_folder)
    out = tmp_path / f"out-{canvas}"
    status = main(["correct", str(mixed_folder), "--model", str(tiny_run), "-o", str(out),
                   "--canvas", canvas, "--fill", "white", "--no-progress"])
    assert status == 1  # some files failed
    assert _digests(mixed_folder) == before  # inputs byte-identical
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    rows = {json_row["file"].split("/in/", 1)[1]: json_row
            for json_row in json.loads((out / "angles.json").read_text())}
    csv_rows = list(csv.DictReader(open(out / "angles.csv")))
    assert len(csv_rows) == len(rows) == 17
    for name, needle in BAD.items():
        assert rows[name]["action"] == "failed", name
        assert needle in rows[name]["error"] and name in rows[name]["error"]
        assert not (out / name).exists()
    for name, row in rows.items():
        if name in BAD:
            continue
        assert row["action"] == "rotated", (name, row)
        src, dst = mixed_folder / name, out / name
        w, h = _displayed_size(src)
        matrix, size = rotation_matrix(-row["angle"], w, h, canvas)
        with Image.open(dst) as written:
            written.load()
            assert written.size == size, name
            assert written.format == Image.open(src).format
            assert written.getexif().get(EXIF_ORIENTATION, 1) == 1
            if canvas == "crop":
                assert written.size == tuple(int(v) for v in largest_upright_rectangle(
                    w, h, -row["angle"]))


def test_bit_depth_and_modes_are_kept(tiny_run, mixed_folder, tmp_path):
    out = tmp_path / "out"
    main(["correct", str(mixed_folder), "--model", str(tiny_run), "-o", str(out), "--no-progress"])
    assert np.asarray(Image.open(out / "grey16.png")).dtype.itemsize == 2 or \
        Image.open(out / "grey16.png").mode.startswith("I")
    import cv2

    assert cv2.imread(str(out / "rgb16.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert Image.open(out / "deep" / "rgba.png").mode == "RGBA"
    assert Image.open(out / "grey.png").mode == "L"


def test_crop_mode_leaves_no_fill(tiny_run, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i, (w, h) in enumerate([(80, 80), (120, 50), (50, 120)]):
        Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(src / f"flat{i}.png")
    out = tmp_path / "out"
    main(["correct", str(src), "--model", str(tiny_run), "-o", str(out), "--canvas", "crop",
          "--fill", "black", "--no-progress"])
    for path in out.glob("*.png"):
        assert np.asarray(Image.open(path)).min() == 200


def test_threshold_dry_run_overwrite_and_input_folder_rules(tiny_run, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(_picture(28, 28, 1)).save(src / "a.png")
    out = tmp_path / "out"
    # Threshold 181 degrees: nothing is rotated, files are copied byte for byte.
    assert main(["correct", str(src), "--model", str(tiny_run), "-o", str(out), "--threshold",
                 "181", "--no-progress"]) == 0
    assert (out / "a.png").read_bytes() == (src / "a.png").read_bytes()
    assert json.loads((out / "angles.json").read_text())[0]["action"] == "kept-small"
    # A rerun keeps an existing output (not decoded again) and the earlier report: this
    # run's report is numbered.
    before = (out / "a.png").stat().st_mtime_ns
    assert main(["correct", str(src), "--model", str(tiny_run), "-o", str(out), "--no-progress"]) == 0
    assert json.loads((out / "angles-2.json").read_text())[0]["action"] == "kept"
    assert (out / "a.png").stat().st_mtime_ns == before
    assert json.loads((out / "angles.json").read_text())[0]["action"] == "kept-small"
    assert main(["correct", str(src), "--model", str(tiny_run), "-o", str(out), "--overwrite",
                 "--no-progress"]) == 0
    # Dry run: predictions only, no image written.
    dry = tmp_path / "dry"
    assert main(["correct", str(src), "--model", str(tiny_run), "-o", str(dry), "--dry-run",
                 "--no-progress"]) == 0
    assert sorted(p.name for p in dry.iterdir()) == ["angles.csv", "angles.json"]
    # Writing into the input folder needs an explicit option; inputs are never overwritten.
    before = (src / "a.png").read_bytes()
    assert main(["correct", str(src), "--model", str(tiny_run), "-o", str(src / "up"),
                 "--no-progress"]) == 2
    assert main(["correct", str(src), "--model", str(tiny_run), "-o", str(src), "--overwrite",
                 "--allow-input-folder", "--no-progress"]) == 1
    assert (src / "a.png").read_bytes() == before


@pytest.mark.parametrize("damage", ["missing", "corrupt", "other"])
def test_bad_model_is_one_error_before_any_work(tmp_path, tiny_run, damage, capsys):
    import shutil

    model = tmp_path / "model"
    if damage != "missing":
        shutil.copytree(tiny_run, model)
    if damage == "corrupt":
        (model / "model.safetensors").write_bytes(b"\x00" * 100)
    if damage == "other":
        (model / "model.json").write_text(json.dumps({"format": "keras", "layers": []}))
    Image.fromarray(_picture(28, 28, 1)).save(tmp_path / "x.png")
    status = main(["correct", str(tmp_path / "x.png"), "--model", str(model), "-o",
                   str(tmp_path / "out")])
    assert status == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_onnx_and_torch_agree(tiny_run, tmp_path):
    pytest.importorskip("onnxruntime")
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["export", str(run), "--format", "onnx"]) == 0
    import torch

    from upright.data.rotated import protocol_set, to_float_images
    from upright.experiments import load_run_config, prepare_data
    from upright.geometry import rotate_batch
    from upright.predictors import load_predictor

    _, splits = prepare_data(load_run_config(run))
    rotated = protocol_set(splits.test.images, splits.test.indices, 4, 1)
    x = rotate_batch(to_float_images(torch.from_numpy(rotated.images[rotated.source])),
                     torch.from_numpy(rotated.angles.astype(np.float32))).numpy()
    torch_angles = load_predictor(run, "torch").predict(x)
    onnx_angles = load_predictor(run, "onnx").predict(x)
    diff = np.abs((torch_angles - onnx_angles + 180) % 360 - 180)
    assert diff.max() < 0.1
    # And the CLI runs on the ONNX runtime.
    Image.fromarray(rotated.images[0]).save(tmp_path / "d.png")
    assert main(["correct", str(tmp_path / "d.png"), "--model", str(run), "--runtime", "onnx",
                 "-o", str(tmp_path / "o"), "--no-progress"]) == 0
