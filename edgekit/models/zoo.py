"""Build a zoo family into a ``.keras`` artifact with its sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.artifacts import Artifact, atomic_path, tool_versions, write_sidecar
from .spec import ArchSpec


def save_keras(model: Any, path: Path) -> None:
    """``model.save(path)``, then the three things Keras 3 writes that change from one save of
    the same model to the next, made fixed, so that the same model gives the same bytes
    (determinism): the save date in ``metadata.json`` (dropped; the sidecar keeps
    the provenance), the weights file's zip timestamp (set to 1980-01-01, as Keras' own other
    entries are), and ``shared_object_id`` in ``config.json`` (a Python ``id()``; renumbered
    in order of first use, which is all Keras needs to match shared objects on loading).
    Keras has no option for any of this, hence the rewrite of its archive."""
    import json
    import re
    import zipfile

    model.save(path)
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    ids: dict[str, str] = {}

    def renumber(m: re.Match) -> str:
        return f"{m[1]}{ids.setdefault(m[2], str(len(ids) + 1))}"

    with zipfile.ZipFile(path, "w") as z:
        for info, data in entries:
            if info.filename == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta).encode()
            elif info.filename == "config.json":
                data = re.sub(r'("shared_object_id": )(\d+)', renumber, data.decode()).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            fixed.create_system = info.create_system
            z.writestr(fixed, data)


def write_model(model: Any, spec: ArchSpec, out: Path, *, stage: dict[str, Any],
                parent: dict[str, Any] | None = None, force: bool = False,
                **facts: Any) -> Artifact:
    """Save a Keras model built from ``spec`` as ``out`` (.keras, atomic) with its sidecar."""
    from .spec import spec_to_dict

    with atomic_path(out, force) as tmp:
        save_keras(model, tmp)
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
    from ..core.artifacts import child_meta
    from .load import keras_input_hwc
    from .spec import spec_to_dict

    with atomic_path(out, force) as tmp:
        save_keras(model, tmp)
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
