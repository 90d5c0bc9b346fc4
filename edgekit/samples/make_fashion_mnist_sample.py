"""Make the small Fashion-MNIST sample shipped with edgekit (kept in the repo for provenance).

Source: Debian package ``dataset-fashion-mnist`` (Zalando SE, MIT/Expat licence), installed at
/usr/share/datasets/fashion-mnist. Picks a class-balanced subset with a fixed seed:
200 images per class from the training split (2,000) and 100 per class from the test split
(1,000), kept in their original order, and writes them as IDX gz files with gzip mtime=0 so a
rerun produces byte-identical files.

    python edgekit/samples/make_fashion_mnist_sample.py [SOURCE_DIR]
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np

SEED = 20240101
PER_CLASS = {"train": 200, "t10k": 100}
OUT = Path(__file__).resolve().parent / "fashion-mnist"
COPYRIGHT = Path("/usr/share/doc/dataset-fashion-mnist/copyright")


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = bytes([0, 0, 0x08, array.ndim])  # 0x08 = unsigned byte
    header = magic + np.asarray(array.shape, ">u4").tobytes()
    with open(path, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
    ) as gz:
        gz.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def pick(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(chosen))


def license_text() -> str:
    """The Expat (MIT) notice of Zalando SE, from the Debian copyright file."""
    lines = COPYRIGHT.read_text().splitlines()
    start = len(lines) - lines[::-1].index("License: Expat")  # the licence text stanza (last)
    body = [ln[1:].rstrip() if ln.strip() != "." else "" for ln in lines[start:]]
    head = [
        "Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist)",
        "",
        "Copyright (c) 2017 Zalando SE, https://tech.zalando.com",
        "",
        "MIT License (Expat)",
        "",
    ]
    return "\n".join(head + body).rstrip() + "\n"


def main(source: Path) -> None:
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(SEED)
    for split, per_class in PER_CLASS.items():
        images = read_idx(source / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(source / f"{split}-labels-idx1-ubyte.gz")
        keep = pick(labels, per_class, rng)
        write_idx(OUT / f"{split}-images-idx3-ubyte.gz", images[keep])
        write_idx(OUT / f"{split}-labels-idx1-ubyte.gz", labels[keep])
    (OUT / "LICENSE").write_text(license_text())
    for f in sorted(OUT.iterdir()):
        print(f"{f.stat().st_size:>9,d}  {f.name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/usr/share/datasets/fashion-mnist"))
