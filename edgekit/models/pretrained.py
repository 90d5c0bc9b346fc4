"""Pretrained ImageNet weights for zoo models: a PyTorch checkpoint or keras.applications'.

``build_pretrained`` builds the family, copies the weights in, checks the result against the
weights' own framework on real photos (scikit-image's sample photos when installed, else
edgekit's bundled Fashion-MNIST sample) and writes a ``.keras`` artifact whose sidecar
records the source, the preprocessing the weights expect, the ImageNet class names and the
check's figures.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import Artifact, sha256_of
from ..core.errors import BadInput, EnvironmentProblem, first_line
from .spec import ArchSpec

CATALOG = Path(__file__).resolve().parent.parent / "catalog"
# Photos with an unambiguous ImageNet answer (scikit-image, CC0 / public domain).
PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_right.png", "astronaut.png")
# Largest |difference| of the softmax outputs accepted as "the same model" (float32 kernels in
# two frameworks differ by ~1e-6; a wrong padding or transposition gives ~1e-1).
TOLERANCE = 1e-4
# Evaluation crop of the references: the shorter side resized to size/0.875, then the centre
# (torchvision's 256 -> 224; tensorflow/tpu efficientnet CROP_PADDING 32 at 224).
CROP = 0.875


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order (WordNet lemmas, from timm's
    imagenet_synset_to_lemma.txt, Apache-2.0)."""
    lines = (CATALOG / "imagenet_classes.txt").read_text().splitlines()
    return [line.split("\t", 1)[1] for line in lines]


def sample_photos() -> list[Path]:
    """scikit-image's sample photos (empty when scikit-image is not installed)."""
    try:
        import skimage.data
    except ImportError:
        return []
    folder = Path(skimage.data.__file__).parent
    return [folder / p for p in PHOTOS if (folder / p).is_file()]


def photo_batch(resolution: int) -> tuple[np.ndarray, str]:
    """(uint8 (N, r, r, 3) check images, what they are): scikit-image's photos with the
    ImageNet centre crop, else 8 images of edgekit's bundled Fashion-MNIST sample."""
    from ..core.data import load_dataset, read_photos

    files, r = sample_photos(), resolution
    if files:
        return (read_photos(files, r, r, 3, CROP),
                "scikit-image photos: " + ", ".join(p.name for p in files))
    ds = load_dataset("fashion-mnist-sample:test", limit=8)
    return next(ds.batches(8, r, r, 3))[0], "fashion-mnist-sample:test[:8]"


def build_pretrained(family: str, weights: str, out: Path, *, resolution: int | None = None,
                     width: float | None = None, depth: float | None = None,
                     dropout: float | None = None, force: bool = False) -> Artifact:
    """Build ``family`` with ``weights`` ("imagenet" or a .pth file) into ``out``."""
    from ..core.registry import FAMILIES
    from .families import get_spec

    spec = get_spec(family, width=width, depth=depth, resolution=resolution, classes=1000,
                    dropout=dropout)
    caps = FAMILIES.get_entry(family).caps
    if weights == "imagenet":
        model, spec, record = _from_keras(family, spec, caps["width"])
    else:
        model, spec, record = _from_torch(family, spec, Path(weights))
    from .zoo import write_model

    stage = {"name": "zoo.build", "config": {"family": family, "width": width, "depth": depth,
                                             "resolution": resolution, "classes": 1000,
                                             "dropout": dropout, "weights": str(weights)}}
    return write_model(model, spec, out, stage=stage, force=force, labels=imagenet_labels(),
                       label_source="ImageNet-1k class index (WordNet lemmas)",
                       pretrained=record)


def _check(keras_probs: np.ndarray, ref_probs: np.ndarray, reference: str, what: str,
           extra: dict[str, Any]) -> dict[str, Any]:
    if not (np.isfinite(keras_probs).all() and np.isfinite(ref_probs).all()):
        raise BadInput(f"the imported model or {reference} gives NaN or infinite outputs")
    diff = float(np.abs(keras_probs - ref_probs).max())
    labels = imagenet_labels()
    doc = {"reference": reference, "images": what, "n_images": int(len(keras_probs)),
           "max_abs_diff_probs": diff, "tolerance": TOLERANCE,
           "top1_agreement": float(np.mean(keras_probs.argmax(-1) == ref_probs.argmax(-1))),
           "top1": [labels[i] for i in keras_probs.argmax(-1)], **extra}
    if diff > TOLERANCE:
        raise BadInput(f"the imported model differs from {reference} by {diff:.2g} (more than "
                       f"{TOLERANCE:g}) on {what}; the weights do not fit this architecture")
    return doc


def _from_torch(family: str, spec: ArchSpec, path: Path):
    from . import torch_import as ti
    from .build import build_model

    sd = ti.load_state_dict(path)
    layout = ti.detect_layout(sd, path)
    if family not in layout.families:
        raise BadInput(f"{path} holds {layout.name} weights; build it as "
                       f"{' or '.join(layout.families)}, not {family}")
    classes = int(sd[layout.classifier + ".weight"].shape[0])
    if classes != 1000:
        raise BadInput(f"{path}: the classifier has {classes} classes, not ImageNet's 1000")
    spec = ti.torch_spec(spec, layout, classes, CROP)
    mapping = layout.keys(spec)
    model = build_model(spec, seed=0)
    n = ti.load_into(model, sd, mapping, path)
    images, what = photo_batch(spec.resolution)
    from ..core.data import to_model_input

    x = to_model_input(images, spec.preprocessing)
    import keras
    import torch

    logits_k = np.asarray(keras.Model(model.input, model.get_layer("logits").output)(x))
    logits_t = ti.torch_logits(spec, sd, mapping, x)
    from scipy.special import softmax

    check = _check(softmax(logits_k, axis=-1), softmax(logits_t, axis=-1), f"PyTorch {torch.__version__} "
                   "(the checkpoint's tensors, torch conv/batch-norm kernels)", what,
                   {"max_abs_diff_logits": float(np.abs(logits_k - logits_t).max())})
    record = {"source": layout.source, "layout": layout.name, "file": path.name,
              "sha256": sha256_of(path), "tensors": n, "padding": layout.padding,
              "bn_eps": layout.bn_eps, "check": check}
    return model, spec, record


def _from_keras(family: str, spec: ArchSpec, default_width: float):
    from . import keras_weights as kw
    from .build import build_model

    app = kw.check_app(family, spec, default_width)
    app_model = app.build(spec)
    path = kw.weights_file(app, spec)
    try:
        app_model.load_weights(str(path))
    except Exception as exc:
        raise EnvironmentProblem(f"{path}: Keras cannot load it as {app.constructor} weights "
                                 f"({first_line(exc, 160)})",
                                 hint="delete the file so that Keras downloads it again") from None
    scale, offset = kw.input_affine(app_model)
    spec = replace(spec, preprocessing={**kw.preprocessing(app.constructor, scale, offset),
                                        "crop": CROP})
    model = build_model(spec, seed=0)
    n = kw.copy_weights(app_model, model)
    images, what = photo_batch(spec.resolution)
    from ..core.data import to_model_input

    x = to_model_input(images, spec.preprocessing)
    ours = np.asarray(model(x, training=False))
    theirs = np.asarray(app_model((x - offset) / scale, training=False))  # its own input scale
    import keras

    check = _check(ours, theirs, f"keras.applications.{app.constructor} (Keras "
                   f"{keras.__version__})", what, {})
    record = {"source": f"keras.applications.{app.constructor} ImageNet weights",
              "file": path.name, "url": app.url + path.name, "sha256": sha256_of(path),
              "layers": n, "check": check}
    return model, spec, record
