"""Build a zoo family into a ``.keras`` artifact with its sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import Artifact, atomic_path, tool_versions, write_sidecar
from .spec import ArchSpec


def write_model(model: Any, spec: ArchSpec, out: Path, *, stage: dict[str, Any],
                parent: dict[str, Any] | None = None, force: bool = False,
                **facts: Any) -> Artifact:
    """Save a Keras model built from ``spec`` as ``out`` (.keras, atomic) with its sidecar."""
    from .spec import spec_to_dict

    with atomic_path(out, force) as tmp:
        model.save(tmp)
    spec_dict = spec_to_dict(spec)
    meta = {
        "format": "keras", "precision": "fp32",
        "input": {"name": model.inputs[0].name, "shape": [1, *spec_dict["input_shape"]],
                  "dtype": "float32"},
        "output": {"shape": [1, spec.classes], "dtype": "float32", "activation": "softmax"},
        "preprocessing": spec.preprocessing, "labels": facts.pop("labels", None),
        "params": int(model.count_params()), "spec": spec_dict, "stage": stage,
        "parent": parent, **facts, "tools": tool_versions("keras", "tensorflow"),
    }
    return Artifact(path=Path(out), format="keras", meta=write_sidecar(out, meta))


def build_artifact(family: str, out: Path, *, width=None, depth=None, resolution=None,
                   classes: int = 1000, dropout=None, seed: int = 0, force: bool = False) -> Artifact:
    from .build import build_model
    from .families import get_spec

    spec = get_spec(family, width=width, depth=depth, resolution=resolution, classes=classes,
                    dropout=dropout)
    stage = {"name": "zoo.build", "config": {"family": family, "width": width, "depth": depth,
                                             "resolution": resolution, "classes": classes,
                                             "dropout": dropout, "seed": seed}}
    return write_model(build_model(spec, seed=seed), spec, out, stage=stage, force=force)


def save_child(model: Any, parent: Artifact, out: Path, stage: str, config: dict[str, Any], *,
               preprocessing: dict[str, Any], spec: ArchSpec | None = None, force: bool = False,
               **facts: Any) -> Artifact:
    """Save a Keras model made from ``parent`` by ``stage`` (.keras, atomic) with its sidecar.
    ``spec`` is the architecture it was built from, when it came from the zoo."""
    from ..artifacts import child_meta
    from .load import keras_input_hwc
    from .spec import spec_to_dict

    with atomic_path(out, force) as tmp:
        model.save(tmp)
    meta = child_meta(
        parent, stage, config, format="keras", precision="fp32",
        input={"name": model.inputs[0].name, "shape": [1, *keras_input_hwc(model)],
               "dtype": "float32"},
        output={"shape": [1, int(model.outputs[0].shape[-1])], "dtype": "float32",
                "activation": "softmax"},
        preprocessing=preprocessing, params=int(model.count_params()),
        spec=spec_to_dict(spec) if spec else None, **facts,
        tools=tool_versions("keras", "tensorflow"))
    return Artifact(path=Path(out), format="keras", meta=write_sidecar(out, meta))
