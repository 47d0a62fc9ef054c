import csv
import hashlib

import numpy as np
import pytest
from PIL import Image

from support import have_mirror as _have_mirror
from support import needs_mnist
from upright.cli import main
from upright.data.folder import FolderError, load_folder
from upright.data.registry import load_source
from upright.data.source import split_source

needs_olivetti = pytest.mark.skipif(not _have_mirror("olivetti"),
                                    reason="UPRIGHT_DATA_MIRROR with olivetti/ not available")


@needs_olivetti
def test_olivetti_loads_with_the_documented_values_and_person_split():
    source = load_source("olivetti")
    assert source.images.shape == (400, 64, 64) and source.images.dtype == np.uint8
    # scikit-learn's scaling: (x - min) / (max - min) with min 0, max 242.
    first_row = source.images[0, 0, :4] / 242.0
    np.testing.assert_allclose(first_row, [0.30991736, 0.3677686, 0.41735536, 0.44214877],
                               rtol=1e-6)
    splits = split_source(source, val_fraction=0.2, seed=0)
    assert len(splits.train) + len(splits.val) == 280 and len(splits.test) == 120
    assert (len(splits.train) + len(splits.val)) * 20 == 5600 and len(splits.test) * 20 == 2400
    train_people = set(splits.train.groups) | set(splits.val.groups)
    assert train_people == set(range(28)) and set(splits.test.groups) == set(range(28, 40))


@pytest.fixture
def image_folder(tmp_path):
    """Small upright images of several formats and sizes, one corrupt file, one non-image."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i in range(12):
        h, w = (40, 56) if i % 2 else (48, 48)
        image = np.zeros((h, w, 3), np.uint8)
        image[: h // 3] = rng.integers(150, 255, 3)  # a bright "sky" on top: upright has a cue
        image[h // 3:, w // 4: 3 * w // 4] = rng.integers(40, 120, 3)
        ext = ["png", "jpg", "bmp", "tiff", "webp"][i % 5]
        folder = root / "sub" if i % 3 == 0 else root
        Image.fromarray(image).save(folder / f"img{i}.{ext}")
    Image.fromarray(np.full((30, 30), 90, np.uint8)).convert("L").save(root / "grey.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "notes.txt").write_text("not an image")
    return root


def _tree_digest(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_folder_source_reads_images_and_names_the_bad_files(image_folder, capsys):
    before = _tree_digest(image_folder)
    source = load_folder(str(image_folder), image_size=32, colour="rgb")
    assert source.images.shape == (13, 32, 32, 3)
    err = capsys.readouterr().err
    assert "skipped 2 unreadable file(s)" in err
    assert "corrupt.jpg" in err and "notes.txt" in err
    assert source.is_test.sum() == 3  # 20% of 13 files, seeded
    assert _tree_digest(image_folder) == before
    grey = load_folder(str(image_folder), image_size=24, aspect="pad")
    assert grey.images.shape == (13, 24, 24)


def test_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(FolderError, match="no readable image"):
        load_folder(str(tmp_path / "empty"))


def test_train_on_a_folder_then_correct_a_file(image_folder, tmp_path):
    before = _tree_digest(image_folder)
    runs = tmp_path / "runs"
    status = main(["train", "--dataset", f"folder:{image_folder}", "--image-size", "32",
                   "--colour", "rgb", "--max-epochs", "2", "--batch-size", "16",
                   "--angles-per-epoch", "4", "--val-angles", "2", "--test-angles", "2",
                   "--runs-dir", str(runs), "--name", "folder", "--no-progress"])
    assert status == 0
    run = runs / "folder"
    import json

    model_json = json.loads((run / "model.json").read_text())
    assert model_json["model"]["channels"] == 3 and model_json["model"]["height"] == 32
    assert json.loads((run / "metrics.json").read_text())["test"]["count"] == 3 * 2
    status = main(["correct", str(image_folder / "img1.jpg"), "--model", str(run),
                   "-o", str(tmp_path / "out")])
    assert status == 0
    with Image.open(tmp_path / "out" / "img1.jpg") as out:
        assert out.size == (56, 40)
    rows = list(csv.DictReader(open(tmp_path / "out" / "angles.csv")))
    assert len(rows) == 1 and rows[0]["action"] == "rotated"
    assert _tree_digest(image_folder) == before


def test_exclude_is_refused_for_a_folder(glyph_folder):
    from upright.errors import DatasetError

    folder = load_source(f"folder:{glyph_folder}", image_size=16)
    with pytest.raises(DatasetError, match="a folder's images are not in groups"):
        split_source(folder, excluded_groups=[0, 1])
    assert len(split_source(folder, excluded_groups=[]).train) > 0  # "exclude none" is fine


@needs_mnist
def test_exclude_names_groups_that_exist():
    from upright.errors import DatasetError

    mnist = load_source("mnist")
    with pytest.raises(DatasetError, match="no digit 42 to exclude"):
        split_source(mnist, excluded_groups=[42])


@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_broken_link_in_a_folder_is_named_with_the_unreadable_files(image_folder, tmp_path, capsys,
                                                                      cache):
    import shutil

    from upright.data.folder import load_folder

    folder = tmp_path / "with-a-broken-link"
    shutil.copytree(image_folder, folder)
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    source = load_folder(str(folder), image_size=32, cache=cache)
    err = capsys.readouterr().err
    assert "gone.png (a broken link)" in err and "skipped 3 unreadable file(s)" in err
    assert any("gone.png" in s for s in source.skipped)
