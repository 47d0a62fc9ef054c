"""Folder sources that stay on disk: the same split, the same pixels and the same training
as a folder read into memory, in bounded memory."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from support import TINY_RUN
from upright.data import folder
from upright.data.folder import FolderImages, keeps_in_memory, load_folder
from upright.data.rotated import EpochPlan, TrainBatches
from upright.data.source import in_memory, split_source
from upright.experiments import drawn_counts


def test_a_streamed_folder_splits_and_reads_exactly_as_one_in_memory(glyph_folder):
    cached = load_folder(str(glyph_folder), image_size=28, cache="on", workers=0)
    streamed = load_folder(str(glyph_folder), image_size=28, cache="off", workers=0)
    assert isinstance(cached.images, np.ndarray) and isinstance(streamed.images, FolderImages)
    assert streamed.images.shape == cached.images.shape and streamed.images.dtype == np.uint8
    assert np.array_equal(streamed.is_test, cached.is_test)
    a, b = split_source(cached, 0.2, seed=1), split_source(streamed, 0.2, seed=1)
    for name in ("train", "val", "test"):
        assert np.array_equal(getattr(a, name).indices, getattr(b, name).indices)
    assert isinstance(b.train.images, FolderImages)  # nothing decoded by the split
    assert np.array_equal(in_memory(b.val, workers=1).images, a.val.images)  # one worker reading
    plan = EpochPlan(len(a.train), 16, 3, seed=2)
    for key in [(0, 0), (1, 2)]:
        x1, a1, p1 = TrainBatches(a.train.images, plan)[key]
        x2, a2, p2 = TrainBatches(b.train.images, plan)[key]
        assert torch.equal(x1, x2) and torch.equal(a1, a2) and torch.equal(p1, p2)


def test_a_file_that_breaks_after_listing_is_named_once_and_left_out(glyph_folder, tmp_path, capsys):
    folder = tmp_path / "glyphs"
    shutil.copytree(glyph_folder, folder)
    source = load_folder(str(folder), image_size=28, cache="off")
    broken = sorted(folder.iterdir())[5]
    broken.write_bytes(broken.read_bytes()[:60])  # header intact, pixels gone
    images = source.images
    for _ in range(2):  # a second epoch says nothing more about it
        pixels, readable = images.read(np.arange(10))
    assert readable.tolist() == [i != 5 for i in range(10)] and len(pixels) == 9
    assert capsys.readouterr().err.count(broken.name) == 1
    plan = EpochPlan(10, 40, 4, seed=0)
    x, angles, positions = TrainBatches(images[np.arange(10)], plan)[(0, 0)]
    assert len(x) == len(angles) == len(positions) == 36  # its 4 views drop out of the batch


@pytest.mark.parametrize("where", ["test", "val", "train"])
def test_a_file_with_damaged_pixels_leaves_the_same_splits_in_memory_and_streamed(glyph_folder, tmp_path,
                                                                                  where):
    """Its header reads, its pixels do not: read into memory it is found at once, streamed
    only when read. Either way it keeps its place while the splits are drawn and then
    leaves its own split only: train, validation and test hold the same files with the
    same indices (so the same angles), and the counts a run records agree (before, the
    in-memory splits were drawn without it, and evaluate refused a run read the other way)."""
    folder = tmp_path / "glyphs"
    shutil.copytree(glyph_folder, folder)
    files = sorted(folder.iterdir())
    clean = split_source(load_folder(str(folder), image_size=28, cache="on"), 0.2, seed=1)
    position = int(getattr(clean, where).indices[3])
    files[position].write_bytes(files[position].read_bytes()[:60])  # header intact, pixels gone
    cached = load_folder(str(folder), image_size=28, cache="on")
    streamed = load_folder(str(folder), image_size=28, cache="off")
    assert len(cached.images) == len(streamed.images) == len(files)  # a blank keeps its place
    assert np.flatnonzero(cached.unreadable).tolist() == [position]
    assert not cached.images[position].any()
    a, b = split_source(cached, 0.2, seed=1), split_source(streamed, 0.2, seed=1)
    b.val, b.test = in_memory(b.val), in_memory(b.test)  # as prepare_data reads them
    for name in ("train", "val", "test"):
        wanted = getattr(clean, name).indices
        kept = wanted[wanted != position]
        assert getattr(a, name).indices.tolist() == kept.tolist(), name
        assert getattr(a, name).drawn == getattr(b, name).drawn == len(wanted), name
    assert b.train.indices.tolist() == clean.train.indices.tolist()  # streamed: left when read
    for name in ("val", "test"):
        assert np.array_equal(getattr(a, name).images, getattr(b, name).images), name
    assert drawn_counts(a) == drawn_counts(b)
    others = np.delete(np.arange(len(files)), position)
    clean_source = load_folder(str(glyph_folder), image_size=28, cache="on")
    assert np.array_equal(cached.images[others], clean_source.images[others])  # the rest as before


@pytest.mark.parametrize("count, damaged", [(3, 2), (4, 2), (6, 4)])
def test_a_small_folder_with_damaged_files_splits_alike_in_memory_and_streamed(glyph_folder, tmp_path,
                                                                               count, damaged):
    """The small-folder rule (two files or fewer: no test split) counts the files listed,
    which is all streaming can count: a few damaged files among a few good ones leave the
    same splits either way (before, memory counted the readable ones and tested on none)."""
    folder = tmp_path / "glyphs"
    folder.mkdir()
    for k, file in enumerate(sorted(glyph_folder.iterdir())[:count]):
        data = file.read_bytes()
        (folder / file.name).write_bytes(data[:60] if k < damaged else data)
    for seed in range(6):
        cached = load_folder(str(folder), image_size=28, cache="on", seed=seed)
        streamed = load_folder(str(folder), image_size=28, cache="off", seed=seed)
        assert int((~cached.unreadable).sum()) == count - damaged
        assert cached.is_test.tolist() == streamed.is_test.tolist()
        a, b = split_source(cached, 0.2, seed=1), split_source(streamed, 0.2, seed=1)
        b.val, b.test = in_memory(b.val), in_memory(b.test)
        assert drawn_counts(a) == drawn_counts(b)
        for name in ("train", "val", "test"):
            assert getattr(a, name).gaps.tolist() == getattr(b, name).gaps.tolist() or name == "train"


def test_a_damaged_training_file_leaves_the_same_training_samples_in_memory_and_streamed(glyph_folder,
                                                                                          tmp_path):
    """Training plans its epochs over the images drawn, read or not, and leaves the damaged
    one out of each batch in both modes: the same images at the same angles in the same
    order (before, memory planned over one image fewer and shuffled otherwise)."""
    folder = tmp_path / "glyphs"
    shutil.copytree(glyph_folder, folder)
    files = sorted(folder.iterdir())
    position = int(split_source(load_folder(str(folder), image_size=28), 0.2, seed=1).train.indices[5])
    files[position].write_bytes(files[position].read_bytes()[:60])
    batches = {}
    for cache in ("on", "off"):
        train = split_source(load_folder(str(folder), image_size=28, cache=cache), 0.2, seed=1).train
        plan = EpochPlan(train.drawn, 16, 2, seed=3, integer_angles=True)
        loader = TrainBatches(train.images, plan, train.gaps).loader()
        batches[cache] = [(images.numpy(), angles.numpy(), positions.numpy())
                          for images, angles, positions in loader]
    assert len(batches["on"]) == len(batches["off"]) > 1
    for (x, a, p), (y, b, q) in zip(batches["on"], batches["off"], strict=True):
        assert np.array_equal(x, y) and np.array_equal(a, b) and np.array_equal(p, q)
    seen = sum(len(x) for x, _, _ in batches["on"])
    assert seen == 2 * (len(train.indices) - 1)  # all but the damaged image's two samples


@pytest.mark.parametrize("cache", ["off", "on"])
def test_unreadable_files_are_skipped_when_listing_a_folder_in_the_same_words(glyph_folder, tmp_path,
                                                                               capsys, cache):
    folder = tmp_path / "glyphs"
    shutil.copytree(glyph_folder, folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    source = load_folder(str(folder), image_size=28, cache=cache)
    assert len(source.images) == len(list(glyph_folder.iterdir()))
    err = capsys.readouterr().err
    assert f"{folder / 'notes.txt'}: not an image file Pillow can identify" in err
    assert f"{folder / 'empty.png'}: empty file (0 bytes)" in err


def test_auto_caching_keeps_a_folder_in_memory_only_when_it_fits():
    assert keeps_in_memory("auto", 100, 64, "grey")
    assert not keeps_in_memory("auto", 10**12, 64, "rgb")
    assert keeps_in_memory("on", 10**12, 64, "rgb") and not keeps_in_memory("off", 1, 8, "grey")


def test_training_on_a_streamed_folder_equals_training_in_memory(glyph_folder, tmp_path):
    from upright.experiments import train_run
    from upright.recipes import make_config

    results = {}
    for cache in ("on", "off"):
        config = make_config("mnist-published", {**TINY_RUN, "dataset": f"folder:{glyph_folder}",
                                                 "cache": cache, "num_workers": 1, "max_epochs": 2})
        results[cache] = train_run(config, tmp_path / cache, progress=False, report=False)
    assert results["off"]["test"] == results["on"]["test"]
    assert results["off"]["training"]["samples_seen"] == results["on"]["training"]["samples_seen"]
    assert json.loads((tmp_path / "off" / "config.json").read_text())["cache"] == "off"


def test_a_folder_with_a_damaged_training_file_trains_and_evaluates_alike_either_way(glyph_folder,
                                                                                     tmp_path):
    """A damaged file among the training images: trained in memory and streamed, the runs
    score the same; and the in-memory run evaluated streamed (as `--cache auto` may choose
    on another machine) is accepted and scores as it did (before, the in-memory splits
    were a file short, training shuffled otherwise, and evaluate refused)."""
    from upright.experiments import evaluate_run, train_run
    from upright.recipes import make_config

    folder = tmp_path / "glyphs"
    shutil.copytree(glyph_folder, folder)
    files = sorted(folder.iterdir())
    settings = {**TINY_RUN, "dataset": f"folder:{folder}", "max_epochs": 1}
    config = make_config("mnist-published", settings)
    clean = split_source(load_folder(str(folder), image_size=28, test_fraction=config.test_fraction,
                                     seed=config.seed), config.val_fraction, config.seed)
    position = int(clean.train.indices[2])  # among the first drawn, which evaluate scores
    files[position].write_bytes(files[position].read_bytes()[:60])
    runs = {cache: train_run(make_config("mnist-published", {**settings, "cache": cache}),
                             tmp_path / cache, progress=False, report=False)
            for cache in ("on", "off")}
    for part in ("test", "train"):
        assert runs["on"][part] == runs["off"][part], part
    assert runs["on"]["train"]["count"] == (config.train_eval_images - 1) * config.test_angles
    saved = json.loads((tmp_path / "on" / "config.json").read_text())
    (tmp_path / "on" / "config.json").write_text(json.dumps({**saved, "cache": "off"}))
    evaluated = evaluate_run(tmp_path / "on", progress=False, report=False)
    for part in ("test", "train"):
        assert evaluated[part]["circular_mae"] == pytest.approx(runs["on"][part]["circular_mae"], abs=1e-4)
        assert evaluated[part]["count"] == runs["on"][part]["count"]


@pytest.mark.parametrize("workers", [0, 2])
def test_reading_a_folder_into_memory_gives_the_same_pixels_with_workers(glyph_folder, workers, monkeypatch):
    monkeypatch.setattr(folder, "LOAD_CHUNK", 4)  # 15 chunks: enough to start the workers
    one = load_folder(str(glyph_folder), image_size=28, cache="on", workers=0)
    other = load_folder(str(glyph_folder), image_size=28, cache="on", workers=workers)
    assert np.array_equal(one.images, other.images)


def test_reading_workers_never_start_by_forking_this_process(glyph_folder):
    """A forked worker inherits locks of threads it does not have (OpenCV's, OpenMP's,
    gloo's) and can wait forever; CI saw a DDP rank hang so. Workers start from a fork
    server (or spawn), and their reading still gives the in-memory pixels."""
    source = load_folder(str(glyph_folder), image_size=28, cache="off")
    plan = EpochPlan(len(source.images), 8, 1, seed=3, integer_angles=True, rank=0, world=1)
    loader = TrainBatches(source.images, plan).loader(workers=2)
    assert loader.multiprocessing_context.get_start_method() in ("forkserver", "spawn")
    cached = load_folder(str(glyph_folder), image_size=28, cache="on")
    pixels, _, positions = next(iter(loader))
    indices = plan.batch(0, 0)[0]
    assert np.array_equal(pixels.numpy(), cached.images[indices.numpy()])
    assert len(positions) == 8


def test_a_run_that_counted_only_readable_files_is_refused_in_words_that_say_so(glyph_folder, tmp_path):
    """A run recorded before the splits counted damaged files recorded the readable ones:
    with damaged files in the folder its splits cannot be checked, and the refusal says
    that (not that the data changed)."""
    from upright.errors import DatasetError
    from upright.experiments import _check_same_split
    from upright.recipes import make_config

    folder = tmp_path / "glyphs"
    shutil.copytree(glyph_folder, folder)
    files = sorted(folder.iterdir())
    splits = split_source(load_folder(str(folder), image_size=28, cache="on"), 0.2, seed=1)
    position = int(splits.val.indices[0])
    files[position].write_bytes(files[position].read_bytes()[:60])
    splits = split_source(load_folder(str(folder), image_size=28, cache="on"), 0.2, seed=1)
    config = make_config("mnist-published", {"dataset": f"folder:{folder}"})
    counted = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    with pytest.raises(DatasetError, match="counted only the images it could read"):
        _check_same_split(config, splits, {"data": {"images": counted}})
    _check_same_split(config, splits, {"data": {"images": drawn_counts(splits)}})
