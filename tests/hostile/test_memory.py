"""Memory bounded by bytes, not image count (item 3)."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hostile.helpers import digit, save_png
from upright import correction, imagefiles
from upright.correction import CorrectOptions, correct_paths
from upright.geometry import rotate_image
from upright.predictors import load_predictor


def _folder(root: Path, count: int, size: int = 600, suffix: str = ".png") -> Path:
    src = root / "in"
    src.mkdir()
    for i in range(count):
        grey = rotate_image(np.kron(digit(28, seed=i), np.ones((size // 28 + 1,) * 2, np.uint8)), 30 + i)
        fast = {"compress_level": 1} if suffix == ".png" else {}
        Image.fromarray(np.dstack([grey] * 3)[:size, :size]).save(src / f"{i:02d}{suffix}", **fast)
    return src


class _LiveDecoded:
    """Counts decoded pixel arrays still alive (freed arrays leave through weakref.finalize)."""

    def __init__(self, monkeypatch) -> None:
        self.live = self.peak = 0
        self.lock = threading.Lock()
        real = correction.read_image

        def spy(path, *args, **kwargs):  # a JPEG's prediction view counts too
            decoded = real(path, *args, **kwargs)
            with self.lock:
                self.live += 1
                self.peak = max(self.peak, self.live)
            weakref.finalize(decoded.pixels, self._freed)
            return decoded

        monkeypatch.setattr(correction, "read_image", spy)

    def _freed(self) -> None:
        with self.lock:
            self.live -= 1


@pytest.mark.parametrize("suffix", [".png", ".jpg"])  # a JPEG: its view, then the whole image
@pytest.mark.parametrize("budget_images, most_alive", [(1, 1), (3, 3)])
def test_item3_the_decoded_bytes_in_flight_stay_within_the_budget(model, tmp_path, monkeypatch,
                                                                   budget_images, most_alive, suffix):
    src = _folder(tmp_path, 12, suffix=suffix)
    per_image = 600 * 600 * 3
    spy = _LiveDecoded(monkeypatch)
    # Each image costs twice its pixels (its turned copy); the budget fits `budget_images`.
    # Every image turned (min_confidence 0): what is measured is the turned copies' memory.
    options = CorrectOptions(memory_budget=2 * per_image * budget_images + 1000, batch_size=8, workers=4,
                             min_confidence=0.0)
    rows = correct_paths([src], load_predictor(model), tmp_path / "out", options)
    assert [r.action for r in rows] == ["rotated"] * 12
    assert spy.peak <= most_alive, spy.peak


def test_item3_without_a_tight_budget_the_window_holds_many_images(model, tmp_path, monkeypatch):
    """The other side of the test above: the spy does see images pile up when allowed."""
    src = _folder(tmp_path, 12)
    spy = _LiveDecoded(monkeypatch)
    options = CorrectOptions(memory_budget=1 << 30, batch_size=8, workers=4)
    correct_paths([src], load_predictor(model), tmp_path / "out", options)
    assert spy.peak >= 4, spy.peak


MODES = {  # name -> pixels
    "grey.png": lambda g: g,
    "rgb.png": lambda g: np.dstack([g, g // 2, g // 3]),
    "rgba.png": lambda g: np.dstack([g, g // 2, g // 3, np.full_like(g, 200)]),
}


@pytest.mark.parametrize("name", sorted(MODES))
def test_item3_a_big_png_is_read_once_and_written_in_strips_exactly_as_pillow_would(
        model, tmp_path, monkeypatch, name):
    grey = rotate_image(np.kron(digit(28), np.ones((9, 9), np.uint8)), 40.0)[:250]
    pixels = MODES[name](grey)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(pixels).save(src / name, dpi=(150, 150))
    predictor = load_predictor(model)
    outputs = {}
    for path, big_bytes in (("whole", 1 << 40), ("strips", 0)):
        monkeypatch.setattr(imagefiles, "BIG_BYTES", big_bytes)
        rows = correct_paths([src], predictor, tmp_path / path, CorrectOptions(canvas="expand"))
        assert rows[0].action == "rotated", rows
        with Image.open(tmp_path / path / name) as written:
            outputs[path] = (written.mode, np.asarray(written), written.info.get("dpi"), rows[0].angle)
    whole, strips = outputs["whole"], outputs["strips"]
    assert whole[0] == strips[0] and whole[3] == strips[3]
    assert np.array_equal(whole[1], strips[1])
    assert [round(v) for v in strips[2]] == [150, 150]


def test_item3_a_small_jpeg_at_the_start_of_a_huge_file_is_not_read_whole(model, tmp_path, monkeypatch):
    path = tmp_path / "padded.jpg"
    Image.fromarray(digit(56)).save(path, quality=95)
    with open(path, "ab") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB of zeros after the JPEG's end
    reads: list[tuple[str, int]] = []
    real = np.fromfile

    def spy(file, *args, **kwargs):
        reads.append((str(file), kwargs.get("count", -1)))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(np, "fromfile", spy)
    decoded = imagefiles.read_image(path)
    assert decoded.pixels.shape == (56, 56)
    assert np.abs(decoded.pixels.astype(int) - digit(56)).mean() < 3
    # Read only as far as a JPEG of 56x56 grey pixels can need (16 MiB of metadata at most).
    assert reads and all(0 < count <= 56 * 56 * 2 + (16 << 20) for _, count in reads)
    reads.clear()
    imagefiles.read_image(save_png(tmp_path / "small.png"))  # the spy works: PNGs don't use it
    Image.fromarray(digit(56)).save(tmp_path / "plain.jpg")
    imagefiles.read_image(tmp_path / "plain.jpg")
    assert [name for name, _ in reads] == [str(tmp_path / "plain.jpg")]
