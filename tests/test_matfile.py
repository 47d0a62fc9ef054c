"""The MAT-file reader against scipy's writer (a test-only dependency) and the real file."""

import io
import struct

import numpy as np
import pytest

from support import have_mirror as _have_mirror
from upright.data.matfile import MatFileError, read_mat

scipy_io = pytest.importorskip("scipy.io")


def _saved(variables: dict, compress: bool) -> bytes:
    buffer = io.BytesIO()
    scipy_io.savemat(buffer, variables, do_compression=compress)
    return buffer.getvalue()


@pytest.mark.parametrize("compress", [False, True])
def test_numeric_variables_read_back_as_loadmat_gives_them(compress):
    rng = np.random.default_rng(0)
    variables = {
        "faces": rng.integers(0, 256, (64, 30), dtype=np.uint8),
        "weights": rng.normal(size=(3, 5, 2)),
        "small": np.array([[7]], dtype=np.int16),  # fits a 4-byte "small" element
        "single": rng.normal(size=(1, 9)).astype(np.float32),
    }
    raw = _saved(variables, compress)
    ours = read_mat(raw)
    theirs = scipy_io.loadmat(io.BytesIO(raw))
    assert set(ours) == set(variables)
    for name in variables:
        assert ours[name].dtype == theirs[name].dtype, name
        np.testing.assert_array_equal(ours[name], theirs[name])
    np.testing.assert_array_equal(ours["weights"], variables["weights"])


@pytest.mark.skipif(not _have_mirror("olivetti"), reason="no Olivetti file in the mirror")
def test_the_olivetti_file_reads_as_scipy_reads_it():
    import os
    from pathlib import Path

    raw = Path(os.environ["UPRIGHT_DATA_MIRROR"], "olivetti", "olivettifaces.mat").read_bytes()
    faces = read_mat(raw)["faces"]
    assert faces.shape == (4096, 400) and faces.dtype == np.uint8
    np.testing.assert_array_equal(faces, scipy_io.loadmat(io.BytesIO(raw))["faces"])


def _with_version(raw: bytes, version: int) -> bytes:
    return raw[:124] + version.to_bytes(2, "little") + raw[126:]


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: b"PNG" + raw[3:], "not a MAT-file"),
    (lambda raw: raw[:100], "too short"),
    (lambda raw: _with_version(raw, 0x0200), "only version 5"),
    (lambda raw: raw[:-40], "runs past the end"),
])
def test_damaged_or_foreign_files_are_clear_errors(mutate, message):
    raw = _saved({"x": np.arange(60, dtype=np.float64).reshape(6, 10)}, compress=False)
    with pytest.raises(MatFileError, match=message):
        read_mat(mutate(raw))


@pytest.mark.parametrize("value, message", [
    (np.array([[1 + 2j]]), "complex"),
    (np.array(["abc"]), "char array"),
    ({"field": 1.0}, "struct array"),
])
def test_non_numeric_variables_are_refused_by_name(value, message):
    raw = _saved({"thing": value}, compress=True)
    with pytest.raises(MatFileError, match=f"'thing'.*{message}|{message}.*'thing'"):
        read_mat(raw)


def _big_endian_file(name: bytes, values: np.ndarray) -> bytes:
    """A MAT-file written by a big-endian machine, built by hand (scipy writes native order)."""
    def element(kind: int, payload: bytes) -> bytes:
        return struct.pack(">II", kind, len(payload)) + payload + b"\0" * ((-len(payload)) % 8)

    matrix = (element(6, struct.pack(">II", 6, 0))  # flags: class double
              + element(5, struct.pack(">ii", *values.shape))
              + element(1, name)
              + element(9, values.astype(">f8").tobytes(order="F")))
    header = b"MATLAB 5.0 MAT-file, big-endian test".ljust(116) + b"\0" * 8
    return header + struct.pack(">H", 0x0100) + b"MI" + element(14, matrix)


def test_big_endian_files_read_in_the_right_byte_order():
    values = np.arange(12, dtype=np.float64).reshape(3, 4) * 1.5
    ours = read_mat(_big_endian_file(b"grid", values))
    np.testing.assert_array_equal(ours["grid"], values)
    np.testing.assert_array_equal(scipy_io.loadmat(io.BytesIO(_big_endian_file(b"grid", values)))["grid"],
                                  values)
