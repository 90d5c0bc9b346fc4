"""keras.applications ImageNet weights, copied into the zoo's own models by layer mapping.

keras.applications builds the same architectures under other layer names (MobileNetV2's
``block_1_expand``, MobileNetV3's ``expanded_conv/project``). Its weight file is read from the
Keras cache (``$KERAS_HOME/models``, else ``~/.keras/models``) with ``keras.utils.get_file``,
which downloads it only when it is absent. The weights are copied pairwise, in graph order,
between the layers that carry them (shapes checked; the application's own ``Normalization``
is preprocessing, recorded in the sidecar instead).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import BadInput, EnvironmentProblem, first_line
from .spec import ArchSpec

_GCS = "https://storage.googleapis.com/"
_V1_ALPHA = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}
_IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class App:
    """One keras.applications constructor and the weight files Keras publishes for it."""

    constructor: str
    widths: tuple[float, ...]  # alphas with published weights; () = the default only
    resolutions: tuple[int, ...]  # () = any (trained at the family default)
    url: str  # folder of the weight files

    def file_name(self, spec: ArchSpec) -> str:
        r, w = spec.resolution, spec.width
        if self.constructor == "MobileNet":
            return f"mobilenet_{_V1_ALPHA[w]}_{r}_tf.h5"
        if self.constructor == "MobileNetV2":
            return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(w)}_{r}.h5"
        if self.constructor.startswith("MobileNetV3"):
            return f"weights_mobilenet_v3_{self.constructor[11:].lower()}_224_{w}_float.h5"
        return f"{self.constructor.lower()}.h5"  # efficientnetb0.h5

    def build(self, spec: ArchSpec):
        import keras

        kw: dict[str, Any] = {"input_shape": spec.input_shape, "weights": None, "classes": 1000}
        if self.widths:
            kw["alpha"] = spec.width
        return getattr(keras.applications, self.constructor)(**kw)


_MOB = _GCS + "tensorflow/keras-applications/"
APPS = {
    "mobilenet_v1": App("MobileNet", tuple(_V1_ALPHA), (128, 160, 192, 224), _MOB + "mobilenet/"),
    "mobilenet_v2": App("MobileNetV2", (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
                        (96, 128, 160, 192, 224), _MOB + "mobilenet_v2/"),
    "mobilenet_v3_small": App("MobileNetV3Small", (0.75, 1.0), (), _MOB + "mobilenet_v3/"),
    "mobilenet_v3_large": App("MobileNetV3Large", (0.75, 1.0), (), _MOB + "mobilenet_v3/"),
    **{f"efficientnet_b{i}": App(f"EfficientNetB{i}", (), (), _GCS + "keras-applications/")
       for i in range(8)},
}


def check_app(family: str, spec: ArchSpec, default_width: float) -> App:
    app = APPS.get(family)
    if app is None:
        raise BadInput(f"keras.applications has no ImageNet weights for {family} (it has: "
                       f"{', '.join(APPS)}); for EfficientNet-Lite pass a PyTorch checkpoint")
    widths = app.widths or (default_width,)
    if spec.width not in widths:
        raise BadInput(f"{family}: ImageNet weights exist for width {', '.join(map(str, widths))},"
                       f" not {spec.width}")
    if app.resolutions and spec.resolution not in app.resolutions:
        raise BadInput(f"{family}: ImageNet weights exist for resolution "
                       f"{', '.join(map(str, app.resolutions))}, not {spec.resolution}")
    return app


def cache_dir() -> Path:
    """Keras's cache folder: $KERAS_HOME, else ~/.keras (as keras.utils.get_file uses it)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def weights_file(app: App, spec: ArchSpec) -> Path:
    """The cached weight file; downloaded by Keras when absent and the network allows."""
    import keras

    name = app.file_name(spec)
    expected = cache_dir() / "models" / name
    if expected.is_file():
        return expected
    try:  # Keras prints its download progress on stdout, which --json keeps for the result
        with contextlib.redirect_stdout(sys.stderr):
            return Path(keras.utils.get_file(name, app.url + name, cache_dir=str(cache_dir()),
                                             cache_subdir="models"))
    except Exception as exc:
        # get_file says "URL fetch failure on URL: None -- why": keep the why
        reason = first_line(exc, 1000).rsplit(" -- ", 1)[-1][:120]
        raise EnvironmentProblem(
            f"the ImageNet weights {expected} are not in the Keras cache and cannot be "
            f"downloaded ({reason})",
            hint=f"copy {name} from a machine with network access ({app.url}{name}) into "
                 f"{expected.parent}, or set KERAS_HOME") from None


def _weighted(model) -> list[Any]:
    import keras

    return [l for l in model.layers if l.get_weights()
            and not isinstance(l, keras.layers.Normalization)]


def copy_weights(app_model, model) -> int:
    """Copy the application's weights into the zoo model layer by layer (graph order)."""
    src, dst = _weighted(app_model), _weighted(model)
    if len(src) != len(dst):
        raise BadInput(f"keras.applications {app_model.name} has {len(src)} layers with weights "
                       f"but the zoo model has {len(dst)}; the architectures differ")
    for a, b in zip(src, dst):
        want = [w.shape for w in b.get_weights()]
        got = [np.reshape(w, s) if w.size == math.prod(s) else w  # 1x1 conv <-> dense
               for w, s in zip(a.get_weights(), want)]
        if [w.shape for w in got] != want or len(got) != len(want):
            raise BadInput(f"{a.name} ({[w.shape for w in a.get_weights()]}) does not fit "
                           f"{b.name} ({want})")
        b.set_weights(got)
    return len(src)


def input_affine(app_model) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) per channel of the preprocessing baked into the application, probed by
    running its layers before the first convolution on black and white images."""
    import keras

    pre = [l for l in app_model.layers[1:]
           if isinstance(l, (keras.layers.Rescaling, keras.layers.Normalization))]
    if not pre:
        return np.ones(3, np.float32), np.zeros(3, np.float32)
    probe = keras.Model(app_model.input, pre[-1].output)
    shape = tuple(app_model.input.shape[1:])
    y = np.asarray(probe(np.stack([np.zeros(shape), np.ones(shape)]).astype(np.float32)))
    offset, scale = y[0, 0, 0], y[1, 0, 0] - y[0, 0, 0]
    return scale.astype(np.float32), offset.astype(np.float32)


def preprocessing(constructor: str, scale: np.ndarray, offset: np.ndarray) -> dict[str, Any]:
    """The input the weights expect, as (pixel - mean) / std in 0..255 units."""
    if constructor in ("MobileNet", "MobileNetV2"):  # preprocess_input mode "tf": [-1, 1]
        from .families import MINUS_ONE_TO_ONE

        return dict(MINUS_ONE_TO_ONE)
    if constructor.startswith("EfficientNet"):
        # keras.applications adds Rescaling(1/sqrt(stddev)) after its Normalization only when
        # it loads "imagenet" weights itself (efficientnet.py): the file stores stddev, not
        # its square, as the variance.
        scale = scale / np.sqrt(np.asarray(_IMAGENET_STD, np.float32))
        offset = offset / np.sqrt(np.asarray(_IMAGENET_STD, np.float32))
    return {"mean": [round(float(v), 4) for v in -offset / scale],
            "std": [round(float(v), 4) for v in 1.0 / scale], "channel_order": "RGB"}
