"""Datasets, preprocessing and calibration sampling.

A data argument (``--data``, ``--calib``) names one of:

- a folder of class sub-folders of images (sorted sub-folder names are the class names; images
  are read lazily with Pillow when first needed), or a flat folder of images (unlabelled: for
  calibration, latency and fidelity, not for accuracy or training),
- an ``.npz`` with ``x`` (N,H,W[,C]) and ``y`` (N,) (optional ``class_names``),
- an IDX images file (``*-images-idx3-ubyte[.gz]``, the MNIST format); labels are read from the
  file beside it with ``images-idx3`` replaced by ``labels-idx1``, unlabelled if there is none,
- a named dataset: ``fashion-mnist:train|test`` (Debian ``dataset-fashion-mnist``) or
  ``fashion-mnist-sample:train|test`` (the small sample shipped in ``edgekit/samples``).
Only numpy is imported at module level; Pillow where images are decoded.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgekit.core.errors import BadInput, EnvironmentProblem

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
NAMED = ("fashion-mnist", "fashion-mnist-sample")  # both use FASHION_MNIST_CLASSES
SPLITS = {"train": "train", "test": "t10k"}  # split -> IDX file prefix
LABELLED = ("labelled data: a folder of class sub-folders (DATA/<class>/<image>), an .npz with "
            "y, or an IDX file beside its labels file")
_NAMED_SPEC = re.compile(r"[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]*")


@dataclass(repr=False)
class Dataset:
    """uint8 images as stored, with optional int64 labels; backed by one array (npz, IDX)
    or by a list of image files read on demand (folders)."""

    source: str
    class_names: list[str] | None
    labels: np.ndarray | None  # int64 (N,), or None when unlabelled
    _array: np.ndarray | None = None
    _files: list[Path] | None = None

    def __len__(self) -> int:
        return len(self._array) if self._array is not None else len(self._files or [])

    def __repr__(self) -> str:
        classes = "?" if self.class_names is None else len(self.class_names)
        return f"Dataset({self.source!r}, {len(self)} images, {classes} classes)"

    def images(self, idx) -> list[np.ndarray] | np.ndarray:
        """One image for an int; for a slice or index list, an array (array-backed datasets)
        or a list of arrays (folders, whose images may differ in size). Each image is uint8
        HxW, HxWx1, HxWx3 or HxWx4 as stored."""
        if self._array is not None:
            return self._array[idx]
        files = self._files or []
        if isinstance(idx, (int, np.integer)):
            return _read_image(files[idx])
        picked = files[idx] if isinstance(idx, slice) else [files[i] for i in np.asarray(idx)]
        return [_read_image(p) for p in picked]

    def batches(
        self, batch_size: int, height: int, width: int, channels: int = 3, indices=None,
        crop: float | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield (uint8 (B,height,width,channels), labels or None) in index order.

        Resizes with Pillow bilinear only when the size differs; grey is repeated to 3 channels,
        alpha is dropped, and RGB becomes grey (channels=1) by ITU-R 601 luminance, the same
        integer formula as Pillow's ``convert("L")``. With ``crop`` (e.g. 0.875), the ImageNet
        evaluation transform comes first: the shorter side resized to size/crop (bilinear,
        antialiased), then the centre cut out."""
        if crop is not None and not 0 < crop <= 1:
            raise BadInput(f"crop must be in (0, 1], got {crop}")
        if channels not in (1, 3):
            raise BadInput(f"channels must be 1 or 3, not {channels}")
        if batch_size < 1 or height < 1 or width < 1:
            raise BadInput(f"batch size and size must be positive: {batch_size}, {height}x{width}")
        order = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            if crop:
                imgs = self.images(chunk)
                x = np.stack([_fit(_centre_crop(_as_nhwc(i[None])[0], height, width, crop)[None],
                                   height, width, channels)[0] for i in imgs])
            elif self._array is not None:
                x = _fit(_as_nhwc(self._array[chunk]), height, width, channels)
            else:
                imgs = self.images(chunk)
                x = np.concatenate([_fit(_as_nhwc(i[None]), height, width, channels) for i in imgs])
            yield x, (None if self.labels is None else self.labels[chunk])


def load_dataset(spec: str | os.PathLike, *, limit: int | None = None) -> Dataset:
    """Open the dataset that ``spec`` names (see the module docstring); keep the first ``limit``."""
    spec = os.fspath(spec)
    if limit is not None and limit < 1:
        raise BadInput(f"limit must be at least 1, not {limit}")
    path = Path(spec).expanduser()
    if path.is_dir():
        ds = _load_folder(spec, path)
    elif path.is_file():
        if path.suffix.lower() == ".npz":
            ds = _load_npz(spec, path)
        elif "idx3" in path.name:
            ds = _load_idx_pair(spec, path)
        else:
            raise BadInput(
                f"{spec}: not a dataset (expected a folder, .npz, IDX file or a name such as "
                "fashion-mnist:test)"
            )
    elif _NAMED_SPEC.fullmatch(spec):
        ds = _load_idx_pair(spec, resolve_named(spec))
        ds.class_names = list(FASHION_MNIST_CLASSES)
    else:
        raise BadInput(f"{spec}: no such file or folder")
    if len(ds) == 0:
        raise BadInput(f"{spec}: the dataset is empty")
    if limit is not None and limit < len(ds):
        if ds._array is not None:
            ds._array = ds._array[:limit].copy()
        else:
            ds._files = ds._files[:limit]
        ds.labels = None if ds.labels is None else ds.labels[:limit].copy()
    return ds


def is_named(spec: str) -> bool:
    """Whether ``spec`` has the form of a named dataset (``fashion-mnist:test``), not a path."""
    return bool(_NAMED_SPEC.fullmatch(spec))


def fashion_mnist_dir() -> Path | None:
    """Where the full Fashion-MNIST is (Debian package or $EDGEKIT_FASHION_MNIST), if present."""
    folder = Path(os.environ.get("EDGEKIT_FASHION_MNIST") or FASHION_MNIST_DIR)
    return folder if any(folder.glob("t10k-images-idx3-ubyte*")) else None


def resolve_named(name: str) -> Path:
    """The IDX images file of a named dataset such as ``fashion-mnist:test``."""
    base, _, split = name.partition(":")
    known = ", ".join(f"{n}:{s}" for n in NAMED for s in SPLITS)
    if base not in NAMED or split not in SPLITS:
        raise BadInput(
            f"{name}: unknown dataset (known: {known}; or give a folder, .npz or IDX file)"
        )
    if base == "fashion-mnist-sample":
        folder = SAMPLES_DIR / "fashion-mnist"
        hint = "this edgekit installation lacks its package data; reinstall edgekit"
    else:
        folder = Path(os.environ.get("EDGEKIT_FASHION_MNIST") or FASHION_MNIST_DIR)
        hint = "apt-get install dataset-fashion-mnist, or use fashion-mnist-sample:train"
    images = folder / f"{SPLITS[split]}-images-idx3-ubyte.gz"
    if not images.is_file():
        images = images.with_suffix("")  # also accept uncompressed files
    if not images.is_file():
        missing = f"{folder}/{SPLITS[split]}-images-idx3-ubyte[.gz]"
        raise EnvironmentProblem(f"{name}: {missing} not found", hint=hint)
    return images


def sample_indices(n_total: int, n: int, seed: int = 0, labels=None) -> np.ndarray:
    """``n`` distinct indices out of ``n_total``, the same for the same arguments (int64).

    With ``labels``, classes take turns: every prefix of the result is as class-balanced as the
    data allows (a class that runs out leaves its turns to the others)."""
    if n < 1:
        raise BadInput(f"sample size must be at least 1, not {n}")
    rng = np.random.default_rng(seed)
    if labels is None:
        return rng.permutation(n_total)[:n].astype(np.int64)
    labels = np.asarray(labels)
    if labels.shape != (n_total,):
        raise ValueError(f"labels have shape {labels.shape}, expected ({n_total},)")
    shuffled = rng.permutation(n_total)
    cls = labels[shuffled]
    by_class = np.argsort(cls, kind="stable")  # within a class, keep the random order
    sorted_cls = cls[by_class]
    first = np.searchsorted(sorted_cls, sorted_cls, side="left")
    rank = np.empty(n_total, dtype=np.int64)
    rank[by_class] = np.arange(n_total) - first  # position of each item within its class
    turn = np.lexsort((cls, rank))  # round robin: all rank-0 items by class, then rank 1, ...
    return shuffled[turn[:n]].astype(np.int64)


def draw(dataset: Dataset, count: int | None, *, seed: int = 0,
         in_order: bool = True) -> tuple[np.ndarray, str]:
    """The one way a stage picks images of a dataset: ``count`` of them class-balanced and
    deterministic (``seed``), or all when ``count`` is None or not below its size. Returns the
    indices (dataset order, unless ``in_order`` is False) and a phrase saying which subset."""
    n = len(dataset)
    subset = "all" if count is None or count >= n else f"{count} of {n}, class-balanced"
    if in_order and subset == "all":
        return np.arange(n), subset
    # out of order (calibration): the shuffled, class-balanced order even when all are taken
    idx = sample_indices(n, n if count is None else min(count, n), seed=seed,
                         labels=dataset.labels)
    return (np.sort(idx) if in_order else idx), subset


def read_images(dataset: Dataset, indices, height: int, width: int, channels: int = 3,
                crop: float | None = None) -> np.ndarray:
    """uint8 images (N, height, width, channels) of ``dataset`` at ``indices``, in that order.
    Filled in place: the images are the largest thing a stage holds (60,000 at 224x224 are
    9 GB), so they are never built twice by a concatenate."""
    x = np.empty((len(indices), height, width, channels), np.uint8)
    at = 0
    for batch, _ in dataset.batches(256, height, width, channels, indices=indices, crop=crop):
        x[at:at + len(batch)] = batch
        at += len(batch)
    return x


def to_model_input(images_uint8: np.ndarray, preprocessing: dict) -> np.ndarray:
    """float32 model input from uint8 images (..., C).

    ``preprocessing`` is ``{"mean": [...], "std": [...], "channel_order": "RGB"|"BGR"}`` in
    0..255 units (one value, or one per channel) giving ``(x - mean) / std``; the form
    ``{"scale": s, "offset": o}`` giving ``x * scale + offset`` is accepted too. "BGR" reverses
    the channel axis of 3-channel input before normalising."""
    x = np.asarray(images_uint8)
    if x.dtype != np.uint8:
        raise BadInput(f"model input must be built from uint8 images, not {x.dtype}")
    return normaliser(preprocessing, x.shape[-1])(x.astype(np.float32))


def normaliser(preprocessing: dict, channels: int) -> Callable[[Any], Any]:
    """The function from float pixels 0..255 to model input that ``preprocessing`` names: the
    one reading of a preprocessing dict, shared by ``to_model_input`` (numpy) and the training
    pipeline (TensorFlow tensors; it uses only arithmetic and slicing)."""
    bgr = str(preprocessing.get("channel_order", "RGB")).upper() == "BGR" and channels == 3
    if "mean" in preprocessing or "std" in preprocessing:
        mean = _per_channel(preprocessing.get("mean", [0.0]), channels, "mean")
        std = _per_channel(preprocessing.get("std", [1.0]), channels, "std")
        if np.any(std == 0):
            raise BadInput(f"preprocessing std must not be zero: {preprocessing['std']}")
        affine = lambda x: (x - mean) / std  # noqa: E731
    elif "scale" in preprocessing or "offset" in preprocessing:
        scale = _per_channel(preprocessing.get("scale", 1.0), channels, "scale")
        offset = _per_channel(preprocessing.get("offset", 0.0), channels, "offset")
        affine = lambda x: x * scale + offset  # noqa: E731
    else:
        raise BadInput(f"preprocessing needs mean and std (or scale and offset): {preprocessing}")
    return (lambda x: affine(x[..., ::-1])) if bgr else affine


def _per_channel(value, channels: int, what: str) -> np.ndarray:
    v = np.atleast_1d(np.asarray(value, dtype=np.float32))
    if channels == 1 and v.ndim == 1 and len(v) > 1 and np.all(v == v[0]):
        v = v[:1]  # an RGB preset with one value for every channel (tf, unit, raw) fits grey
    if v.ndim != 1 or len(v) not in (1, channels):
        raise BadInput(f"preprocessing {what} has {v.size} values; expected 1 or {channels}")
    return v


# --- converting images ---------------------------------------------------------------------


def _as_nhwc(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 3 else x


def _fit(x: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """(B,H,W,C) uint8 with C in 1,3,4 -> (B,height,width,channels) uint8."""
    if x.shape[-1] == 4:
        x = x[..., :3]
    if channels == 1 and x.shape[-1] == 3:
        rgb = x.astype(np.uint32)  # Pillow's convert("L"): ITU-R 601-2 in 16-bit fixed point
        lum = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
        x = lum.astype(np.uint8)[..., None]
    if x.shape[1:3] != (height, width):
        from PIL import Image

        def resize(img: np.ndarray) -> np.ndarray:
            pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
            out = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
            return out.reshape(height, width, img.shape[-1])

        x = np.stack([resize(img) for img in x])
    if channels == 3 and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x)


def read_photos(paths: list[Path], height: int, width: int, channels: int = 3,
                crop: float | None = None) -> np.ndarray:
    """uint8 (N, height, width, channels) from image files, fitted as ``Dataset.batches``
    does (with ``crop``, the ImageNet evaluation centre crop)."""
    files = Dataset("images", None, None, _files=[Path(p) for p in paths])
    return np.concatenate([x for x, _ in files.batches(64, height, width, channels, crop=crop)]
                          or [np.zeros((0, height, width, channels), np.uint8)])


def _centre_crop(img: np.ndarray, height: int, width: int, crop: float) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    s = max(height / crop / h, width / crop / w)  # the shorter side becomes size / crop
    size = (max(width, round(w * s)), max(height, round(h * s)))
    pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    big = np.asarray(pil.resize(size, Image.Resampling.BILINEAR, reducing_gap=None))
    big = big.reshape(size[1], size[0], img.shape[-1])
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return big[top:top + height, left:left + width]


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)  # phone photos store their rotation in EXIF
            if im.mode in ("I;16", "I;16B", "I;16L"):
                return (np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8)
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("L" if im.mode in ("1", "LA", "I", "F") else "RGB")
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadInput(f"{path}: not a readable image ({exc})") from None


# --- readers -------------------------------------------------------------------------------


def _load_folder(spec: str, root: Path) -> Dataset:
    try:
        return _list_folder(spec, root)
    except OSError as exc:  # unreadable sub-folder, broken link
        raise BadInput(f"{spec}: cannot list the folder ({exc})") from None


def _list_folder(spec: str, root: Path) -> Dataset:
    entries = [p for p in sorted(root.iterdir()) if not p.name.startswith(".")]
    if not entries:
        raise BadInput(f"{spec}: the folder is empty")
    classes = [p for p in entries if p.is_dir()]
    if not classes:  # a flat folder: unlabelled images, the usual calibration set
        files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not files:
            raise BadInput(f"{spec}: no images ({', '.join(IMAGE_SUFFIXES)}) and no class "
                           f"sub-folders (expected {spec}/<image> or {spec}/<class>/<image>)")
        return Dataset(spec, None, None, _files=files)
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(classes):
        found = sorted(
            p for p in folder.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )  # fmt: skip
        files += found
        labels += [label] * len(found)
    if not files:
        raise BadInput(f"{spec}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class sub-folders")
    return Dataset(spec, [p.name for p in classes], np.asarray(labels, np.int64), _files=files)


def _load_npz(spec: str, path: Path) -> Dataset:
    """x: uint8 as is; integer 0..255 cast; float in 0..1 scaled by 255, float in 0..255
    rounded (a float array whose maximum is <= 1 is read as 0..1); anything else is refused."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x", "y") if k not in npz.files]
            if missing:
                has = ", ".join(npz.files) or "nothing"
                raise BadInput(f"{spec}: the .npz lacks {' and '.join(missing)} (it has {has})")
            x, y = npz["x"], npz["y"]
            names = [str(n) for n in npz["class_names"]] if "class_names" in npz.files else None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise BadInput(f"{spec}: not a readable .npz ({exc})") from None
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
        raise BadInput(f"{spec}: x has shape {x.shape}; expected (N,H,W) or (N,H,W,C), C 1, 3 or 4")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise BadInput(f"{spec}: x has {len(x)} images but y has shape {y.shape}, not ({len(x)},)")
    return Dataset(spec, names, _check_labels(spec, y), _array=_to_uint8(spec, x))


def _to_uint8(spec: str, x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if x.size == 0:
        return x.astype(np.uint8)
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise BadInput(f"{spec}: x contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo >= 0 and hi <= 1:
            return np.rint(x * 255).astype(np.uint8)
        if lo >= 0 and hi <= 255:
            return np.rint(x).astype(np.uint8)
        raise BadInput(
            f"{spec}: float x spans {lo:g}..{hi:g}; expected raw pixels in 0..1 or 0..255"
        )
    if x.dtype.kind in "iu" and x.min() >= 0 and x.max() <= 255:
        return x.astype(np.uint8)
    raise BadInput(f"{spec}: x has dtype {x.dtype}; expected uint8 (or float 0..1 or 0..255)")


def _check_labels(spec: str, y: np.ndarray) -> np.ndarray:
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu" or (y.size and y.min() < 0):
        raise BadInput(f"{spec}: labels must be class ids 0,1,2,... (dtype {y.dtype})")
    return y.astype(np.int64)


# The IDX format (MNIST) is a 4-byte magic (0, 0, dtype 0x08 = uint8, number of dimensions),
# then one big-endian uint32 per dimension, then the data: about 20 lines of numpy, no library.
def _read_idx(path: Path, magic: int) -> np.ndarray:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInput(f"{path}: not a readable IDX file ({exc})") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        got = raw[:4].hex() if len(raw) >= 4 else "a truncated header"
        raise BadInput(f"{path}: not an IDX file (magic {got}, expected {magic:08x})")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    if len(raw) - header != int(np.prod(shape)):
        raise BadInput(
            f"{path}: truncated or corrupt IDX file (header says {shape}, "
            f"{int(np.prod(shape))} bytes; it holds {len(raw) - header})"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _load_idx_pair(spec: str, images_path: Path) -> Dataset:
    images = _read_idx(images_path, 0x00000803)
    name = images_path.name.replace("images-idx3", "labels-idx1")
    labels_path = images_path.with_name(name.replace("images.idx3", "labels.idx1"))
    labels = None
    if labels_path != images_path and labels_path.is_file():
        labels = _read_idx(labels_path, 0x00000801).astype(np.int64)
        if len(labels) != len(images):
            raise BadInput(
                f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}"
            )
    return Dataset(spec, None, labels, _array=images)
