"""Write the sample test images shipped inside the package (src/upright/shipped/samples/).

`upright demo` corrects these at once, offline, before (and without) the full datasets:
500 MNIST test digits (all ten classes, the demo keeps those its model was trained for)
and 5 faces of each of the 12 Olivetti test people. Seeded; rerun only to change them.

    UPRIGHT_DATA_MIRROR=../shared/data python scripts/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from upright.data.registry import load_source
from upright.data.samples import SAMPLES_DIR


def main() -> None:
    rng = np.random.default_rng(0)
    mnist = load_source("mnist")
    test = np.flatnonzero(mnist.is_test)
    picks = np.sort(rng.choice(test, 500, replace=False))
    faces = load_source("olivetti")
    people = np.unique(faces.groups[faces.is_test])
    face_picks = np.concatenate([np.flatnonzero(faces.groups == p)[:5] for p in people])
    out = Path(SAMPLES_DIR)
    for name, source, chosen in (("mnist", mnist, picks), ("olivetti", faces, face_picks)):
        np.savez_compressed(out / f"{name}.npz", images=source.images[chosen],
                            indices=chosen.astype(np.int64), groups=source.groups[chosen])
        print(name, len(chosen), (out / f"{name}.npz").stat().st_size, "bytes")


if __name__ == "__main__":
    main()
