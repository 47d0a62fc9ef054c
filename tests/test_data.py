import gzip
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from support import needs_mnist
from upright.data import mnist
from upright.data.mirror import CACHE_ENV, MIRROR_ENV, DataUnavailableError
from upright.data.registry import load_source
from upright.data.rotated import (
    FIXED_ANGLES,
    EpochPlan,
    TrainBatches,
    fixed_angle_set,
    protocol_angles,
    protocol_set,
)
from upright.data.source import split_source


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parse_idx_of_a_file_we_write(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    parsed = mnist.parse_idx(_idx_bytes(images))
    np.testing.assert_array_equal(parsed, images)
    labels = mnist.parse_idx(_idx_bytes(np.array([7, 2, 1])))
    assert labels.tolist() == [7, 2, 1]


@pytest.mark.parametrize("data, message", [
    (b"\x01\x00\x08\x01", "magic"),
    (bytes([0, 0, 0x08, 1]) + struct.pack(">I", 5) + b"abc", "body"),
    (bytes([0, 0, 0x07, 1]) + struct.pack(">I", 1) + b"a", "type"),
])
def test_parse_idx_rejects_bad_files(data, message):
    with pytest.raises(ValueError, match=message):
        mnist.parse_idx(data)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No mirror, an empty cache, and hosts that refuse connections."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(mnist, "MNIST_BASE_URLS", ("http://127.0.0.1:9/mnist/",))
    return tmp_path / "cache"


def test_offline_without_mirror_names_the_files_and_where_to_put_them(offline):
    with pytest.raises(DataUnavailableError) as info:
        mnist.load_mnist()
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert str(offline / "mnist") in message and MIRROR_ENV in message
    assert "\n" not in message
    assert not any(p.is_file() for p in offline.rglob("*"))


@pytest.fixture
def wrong_file_server(tmp_path):
    """A local HTTP host serving a valid gzip IDX file with the wrong content."""
    served = tmp_path / "served" / "mnist"
    served.mkdir(parents=True)
    for name in mnist.MNIST_FILES:
        (served / name).write_bytes(gzip.compress(_idx_bytes(np.zeros((2, 2), np.uint8))))
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(served.parent), **k)
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/mnist/"
    server.shutdown()


def test_download_with_wrong_checksum_leaves_nothing(offline, wrong_file_server, monkeypatch):
    monkeypatch.setattr(mnist, "MNIST_BASE_URLS", (wrong_file_server,))
    with pytest.raises(DataUnavailableError, match="checksum mismatch"):
        mnist.load_mnist_file("train-labels-idx1-ubyte.gz")
    assert not any(p.is_file() for p in offline.rglob("*"))


def test_download_of_right_content_lands_in_cache(offline, tmp_path, monkeypatch):
    # Serve the right content (re-wrapped in another gzip) from a local host.
    content = _idx_bytes(np.array([4, 2], np.uint8))
    served = tmp_path / "host" / "mnist"
    served.mkdir(parents=True)
    (served / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(content, 1))
    import hashlib

    monkeypatch.setitem(mnist.MNIST_FILES, "train-labels-idx1-ubyte.gz",
                        hashlib.sha256(content).hexdigest())
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(served.parent), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(mnist, "MNIST_BASE_URLS", (
            "http://127.0.0.1:9/dead/", f"http://127.0.0.1:{server.server_address[1]}/mnist/"))
        labels = mnist.load_mnist_file("train-labels-idx1-ubyte.gz")
    finally:
        server.shutdown()
    assert labels.tolist() == [4, 2]
    assert sorted(p.name for p in offline.rglob("*") if p.is_file()) == [
        "train-labels-idx1-ubyte.gz"]


def test_mirror_with_wrong_content_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(_idx_bytes(np.zeros(3, np.uint8))))
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    with pytest.raises(DataUnavailableError, match="train-labels-idx1-ubyte.gz: checksum"):
        mnist.load_mnist_file("train-labels-idx1-ubyte.gz")
    with pytest.raises(DataUnavailableError, match="not in the mirror"):
        mnist.load_mnist_file("t10k-labels-idx1-ubyte.gz")


@needs_mnist
def test_real_mnist_has_the_published_counts():
    source = load_source("mnist")
    assert source.images.shape == (70000, 28, 28)
    assert source.groups[:6].tolist() == [5, 0, 4, 1, 9, 2]
    assert source.groups[60000:60006].tolist() == [7, 2, 1, 0, 4, 1]
    splits = split_source(source, val_fraction=0.2, seed=0)
    assert len(splits.train) + len(splits.val) == 35566
    assert len(splits.test) == 5953
    assert len(splits.val) == 7113
    assert not set(np.unique(splits.test.groups)) & {0, 1, 6, 8}
    # No source image in two splits.
    sets = [set(s.indices.tolist()) for s in (splits.train, splits.val, splits.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    # The published evaluation set sizes.
    assert len(protocol_set(splits.test.images, splits.test.indices, 20, 1)) == 119060
    assert len(splits.train) * 20 + len(splits.val) * 20 == 711320


def test_exclusion_list_is_an_option():
    from upright.data.source import SourceData

    source = SourceData("toy", np.zeros((10, 2, 2), np.uint8), np.arange(10) % 5,
                        np.arange(10) >= 8, "digit", (0, 1))
    default = split_source(source, 0.25, 0)
    assert set(np.concatenate([default.train.groups, default.val.groups])) == {2, 3, 4}
    custom = split_source(source, 0.25, 0, excluded_groups=[4])
    assert 4 not in set(custom.train.groups) | set(custom.val.groups) | set(custom.test.groups)
    assert len(custom.val) == 2  # a quarter of the 7 kept non-test images, rounded


def test_protocol_angles_are_seeded_integers_and_subset_stable():
    ids = np.arange(1000)
    a = protocol_angles(ids, 20, seed=5)
    assert a.shape == (1000, 20) and a.dtype.kind == "i"
    assert a.min() >= -180 and a.max() < 180
    np.testing.assert_array_equal(a, protocol_angles(ids, 20, seed=5))
    assert not np.array_equal(a, protocol_angles(ids, 20, seed=6))
    np.testing.assert_array_equal(a[500:], protocol_angles(ids[500:], 20, seed=5))
    # Roughly uniform over the circle.
    counts = np.histogram(a, bins=12, range=(-180, 180))[0]
    assert counts.min() > 0.8 * counts.mean()


def test_fixed_angle_set_covers_every_image_and_angle():
    images = np.zeros((3, 4, 4), np.uint8)
    fixed = fixed_angle_set(images)
    assert len(fixed) == 3 * len(FIXED_ANGLES)
    assert sorted(set(fixed.angles.tolist())) == sorted(FIXED_ANGLES)


def _epoch(images, plan, epoch=0):
    batches = TrainBatches(images, plan)
    return [batches[(epoch, b)] for b in range(len(batches))]


def test_train_batches_are_seeded_and_cover_each_image_per_epoch():
    images = np.arange(10, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)
    first = _epoch(images, EpochPlan(10, batch_size=8, angles_per_epoch=3, seed=1))
    again = _epoch(images, EpochPlan(10, batch_size=8, angles_per_epoch=3, seed=1))
    for (x1, a1, _), (x2, a2, _) in zip(first, again, strict=True):
        assert np.array_equal(x1, x2) and np.array_equal(a1, a2)
    seen = np.concatenate([x[:, 0, 0].numpy() for x, _, _ in first])
    assert np.bincount(seen, minlength=10).tolist() == [3] * 10
    angles = np.concatenate([a.numpy() for _, a, _ in first])
    assert angles.min() >= -180 and angles.max() < 180
    later = _epoch(images, EpochPlan(10, batch_size=8, angles_per_epoch=3, seed=1), epoch=1)
    assert not np.array_equal(angles, np.concatenate([a.numpy() for _, a, _ in later]))


def test_one_process_plan_is_the_published_stream():
    """World size 1 draws exactly what training drew before DDP existed (the shipped
    models' runs stay reproducible): one seeded permutation and angle draw per epoch."""
    n, views, batch, seed, epoch = 7, 5, 4, 3, 2
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n * views, generator=generator) % n
    angles = torch.randint(-180, 180, (n * views,), generator=generator).to(torch.float32)
    plan = EpochPlan(n, batch, views, seed)
    got = [plan.batch(epoch, b) for b in range(len(plan))]
    assert torch.equal(torch.cat([g[0] for g in got]), order)
    assert torch.equal(torch.cat([g[1] for g in got]), angles)


def test_ranks_train_on_disjoint_parts_that_together_are_the_one_process_epoch():
    n, views, batch = 13, 4, 8  # 52 samples: 6 full batches and a last one of 4
    one = EpochPlan(n, batch, views, seed=5)
    ranks = [EpochPlan(n, batch, views, seed=5, rank=r, world=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) == 7  # every rank takes the same steps
    for b in range(len(one)):
        parts = [plan.batch(0, b) for plan in ranks]
        positions = [set(p[2].tolist()) for p in parts]
        assert not positions[0] & positions[1]  # no sample, and so no angle draw, shared
        assert len(positions[0]) == len(positions[1])
        whole = one.batch(0, b)
        assert positions[0] | positions[1] == set(whole[2].tolist())
        assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])
    with pytest.raises(ValueError, match="cannot be shared by 4"):
        EpochPlan(n, 2, views, world=4)


def test_the_loader_gives_each_epoch_its_own_batches_in_order_with_workers():
    images = np.arange(12, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)
    plan = EpochPlan(12, 5, 2, seed=0)
    loader = TrainBatches(images, plan).loader(workers=2)
    epochs = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)  # what Lightning does before each epoch
        epochs.append(torch.cat([a for _, a, _ in loader]))
    expected = [torch.cat([a for _, a, _ in _epoch(images, plan, e)]) for e in range(2)]
    assert torch.equal(epochs[0], expected[0]) and torch.equal(epochs[1], expected[1])
    assert not torch.equal(epochs[0], epochs[1])


def test_no_partial_files_after_failures_in_cache_folder(offline):
    with pytest.raises(DataUnavailableError):
        mnist.load_mnist_file("t10k-images-idx3-ubyte.gz")
    assert [p for p in Path(offline).rglob("*.part")] == []
