"""The one registry mechanism: a plain dict of name -> (dotted path, capabilities).

Families, quantization engines, exporters and runners are all registered here as data, so
``edgekit doctor`` and ``zoo list`` can read names and capabilities without importing any
heavy module; ``resolve`` imports the target only when it is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from .errors import BadInput


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:attribute"
    caps: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        obj = importlib.import_module(module)
        return getattr(obj, attr) if attr else obj


class Registry(dict):
    """name -> Entry. ``get_entry`` raises a BadInput that lists the known names."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def add(self, name: str, target: str, **caps: Any) -> None:
        self[name] = Entry(name, target, caps)

    def get_entry(self, name: str) -> Entry:
        try:
            return self[name]
        except KeyError:
            known = ", ".join(sorted(self))
            raise BadInput(f"unknown {self.kind} '{name}' (known: {known})") from None

    def resolve(self, name: str) -> Any:
        return self.get_entry(name).load()


# --- what is registered -----------------------------------------------------------------

# A model's precision; every one but fp32 is a quantization mode (``quantize --mode``).
PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
QUANT_MODES = PRECISIONS[1:]

# Quantization / conversion engines, per output format. ``modes`` are the --mode values.
QUANTIZERS = Registry("quantization engine")
QUANTIZERS.add("tflite", "edgekit.optimize.quantize:quantize_tflite",
               format="tflite", modes=list(QUANT_MODES),
               targets=["cpu", "gpu"], engines=["tflite"], suffix=".tflite",
               needs=["tensorflow"])
QUANTIZERS.add("onnx", "edgekit.optimize.onnx_quant:quantize_onnx",
               format="onnx", modes=["int8"], targets=["cpu", "tensorrt", "jetson"],
               engines=["ort", "nncf"], suffix=".onnx",
               needs=["tensorflow", "tf2onnx", "onnxruntime", "nncf"])

EXPORTERS = Registry("export format")
EXPORTERS.add("tflite", "edgekit.formats.tflite:export_tflite", suffix=".tflite",
              targets=["cpu", "gpu"], needs=["tensorflow"])
EXPORTERS.add("onnx", "edgekit.formats.onnx:export_onnx", suffix=".onnx",
              targets=["cpu", "jetson", "tensorrt"],
              needs=["tensorflow", "tf2onnx", "onnx", "onnxslim", "onnxruntime"])

RUNNERS = Registry("runner")
RUNNERS.add("local", "edgekit.runtime.local:LocalRunner",
            formats=["tflite", "onnx", "keras"], where="this machine")
RUNNERS.add("ssh", "edgekit.runtime.ssh:SSHRunner",
            formats=["tflite", "onnx", "keras"], where="a Linux device over SSH (--host)")
RUNNERS.add("adb", "edgekit.runtime.adb:ADBRunner", formats=["tflite"],
            where="an Android device over adb (--serial), timed by TFLite's benchmark_model")
RUNNERS.add("emulator", "edgekit.runtime.emulator:EmulatorRunner", formats=["tflite"],
            where="an Arm64 user-space under qemu (edgekit emulator setup); accuracy only")

# Model families of the zoo (architecture as data in edgekit/models/families.py).
# caps: kind, default (width, depth, resolution), which multipliers scale it.
FAMILIES = Registry("model family")
# (filled in by edgekit/models: one line per family / variant)
_MB = "edgekit.models.families:"
_WR, _WDR = ["width", "resolution"], ["width", "depth", "resolution"]
FAMILIES.add("mobilenet_v1", _MB + "mobilenet_v1", kind="mobilenet_v1",
             width=1.0, depth=1.0, resolution=224, dropout=0.001, scales=_WR)
FAMILIES.add("mobilenet_v2", _MB + "mobilenet_v2", kind="mobilenet_v2",
             width=1.0, depth=1.0, resolution=224, dropout=0.2, scales=_WR)
FAMILIES.add("mobilenet_v3_small", _MB + "mobilenet_v3_small", kind="mobilenet_v3",
             width=1.0, depth=1.0, resolution=224, dropout=0.2, scales=_WR)
FAMILIES.add("mobilenet_v3_large", _MB + "mobilenet_v3_large", kind="mobilenet_v3",
             width=1.0, depth=1.0, resolution=224, dropout=0.2, scales=_WR)
# (width, depth, resolution, dropout) from tensorflow/tpu efficientnet_builder.py and
# efficientnet_lite_builder.py
for _name, (_w, _d, _r, _p) in {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2), "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3), "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4), "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5), "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}.items():
    FAMILIES.add(_name, _MB + "efficientnet", kind="efficientnet",
                 width=_w, depth=_d, resolution=_r, dropout=_p, scales=_WDR)
for _name, (_w, _d, _r, _p) in {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2), "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3), "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 300, 0.3),
}.items():
    FAMILIES.add(_name, _MB + "efficientnet_lite", kind="efficientnet_lite",
                 width=_w, depth=_d, resolution=_r, dropout=_p, scales=_WDR)

# The stages: each an options model, a function and its facts (edgekit/stages). ``recipe``:
# the stages a recipe lists under ``stages:`` (build is its ``zoo:``).
STAGES = Registry("stage")
STAGES.add("build", "edgekit.stages.build:BUILD")
for _stage in ("scale", "prune", "finetune", "quantize", "export", "profile"):
    _module = {"prune": "train", "finetune": "train", "quantize": "convert",
               "export": "convert"}.get(_stage, _stage)
    STAGES.add(_stage, f"edgekit.stages.{_module}:{_stage.upper()}", recipe=True)
for _stage in ("inspect", "predict", "compare", "report"):
    STAGES.add(_stage, f"edgekit.stages.evaluate:{_stage.upper()}")
STAGES.add("calibrate", "edgekit.stages.calibrate:CALIBRATE")
