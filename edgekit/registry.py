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

# Quantization / conversion engines, per output format. ``modes`` are the --mode values.
QUANTIZERS = Registry("quantization engine")
QUANTIZERS.add("tflite", "edgekit.optimize.quantize:quantize_tflite",
               format="tflite", modes=["fp16", "dynamic", "int8", "int16x8"],
               needs=["tensorflow"])

EXPORTERS = Registry("export format")
EXPORTERS.add("tflite", "edgekit.export.tflite:export_tflite", suffix=".tflite",
              needs=["tensorflow"])

RUNNERS = Registry("runner")
RUNNERS.add("local", "edgekit.runtime.local:LocalRunner",
            formats=["tflite", "onnx", "keras"], where="this machine")

# Model families of the zoo (architecture as data in edgekit/models/families.py).
# caps: kind, default (width, depth, resolution), which multipliers scale it.
FAMILIES = Registry("model family")
# (filled in by edgekit/models: one line per family / variant)
