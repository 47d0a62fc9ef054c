"""One preparation: a folder source and correction see a file's pixels identically (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from upright.correction import model_input
from upright.data.folder import load_folder
from upright.imagefiles import read_image
from upright.models.model import ModelSpec
from upright.prepare import prepare_image


@pytest.fixture
def varied_folder(tmp_path):
    """Files of every kind a user's folder holds: sizes, aspects, modes, depths, EXIF."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "photos"
    folder.mkdir()
    colour = rng.integers(0, 256, (90, 140, 3), np.uint8)
    Image.fromarray(colour).save(folder / "a-wide.png")
    Image.fromarray(colour[:, :70]).save(folder / "b-tall.jpg", quality=90)
    alpha = rng.integers(0, 256, (90, 140), np.uint8)
    Image.fromarray(np.dstack([colour, alpha])).save(folder / "c-rgba.png")
    Image.fromarray((rng.integers(0, 65536, (50, 50))).astype(np.uint16)).save(folder / "d-grey16.png")
    Image.fromarray(colour[:40, :40]).convert("CMYK").save(folder / "e-cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(colour[:60, :100]).save(folder / "f-turned.jpg", exif=exif.tobytes())
    Image.fromarray(colour[:20, :20, 0]).save(folder / "g-small.bmp")  # enlarged, not shrunk
    return folder


@pytest.mark.parametrize("colour, aspect", [("grey", "crop"), ("rgb", "crop"), ("grey", "pad"),
                                            ("rgb", "pad")])
def test_folder_training_and_correction_prepare_every_file_to_the_bit(varied_folder, colour, aspect):
    source = load_folder(str(varied_folder), image_size=32, aspect=aspect, colour=colour)
    spec = ModelSpec(channels=1 if colour == "grey" else 3, height=32, width=32, aspect=aspect)
    files = sorted(varied_folder.iterdir())
    assert len(source.images) == len(files) == 7
    for file, trained_on in zip(files, source.images, strict=True):
        decoded = read_image(file)
        seen_when_correcting = model_input(decoded.pixels, spec, decoded.mode)
        as_trained = trained_on.astype(np.float32) / 255.0
        as_trained = as_trained[None] if as_trained.ndim == 2 else as_trained.transpose(2, 0, 1)
        assert np.array_equal(seen_when_correcting, as_trained), file.name


def test_preparation_values():
    """What prepare_image does, on values: crop keeps the centre, pad adds black bars, 16 bits
    round to 8, grey uses the ITU-R 601 weights, an EXIF turn is applied before."""
    wide = np.zeros((10, 30), np.uint8)
    wide[:, 10:20] = 200
    assert (prepare_image(wide, 10, 10, 1, "crop") == 200).all()
    padded = prepare_image(wide, 6, 6, 1, "pad")
    assert padded[0].max() == 0 and padded[-1].max() == 0 and padded[3, 3] > 0
    assert prepare_image(np.full((4, 4), 65535, np.uint16), 4, 4, 1)[0, 0] == 255
    assert prepare_image(np.full((4, 4), 257 * 7 + 128, np.uint16), 4, 4, 1)[0, 0] == 7
    assert prepare_image(np.full((4, 4), 257 * 7 + 129, np.uint16), 4, 4, 1)[0, 0] == 8
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    assert prepare_image(red, 4, 4, 1)[0, 0] == round(0.299 * 255)
    assert prepare_image(red, 4, 4, 3).shape == (4, 4, 3)
    with pytest.raises(ValueError, match="aspect must be one of"):
        prepare_image(red, 4, 4, 1, "stretch")
