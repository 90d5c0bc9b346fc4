"""Checking the JSON documents edgekit reads back: profile results, ``run.json`` and artifact
sidecars. They are user files (edited, truncated, from another version), so before any code
reads a field it is checked here with pydantic: only the fields edgekit reads, each with its
type; everything else is kept as it is. A document that does not fit is one BadInput naming
the file and the first wrong field, never a KeyError or TypeError deep in ``compare`` or
``report``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import BadInput

PROFILE_SCHEMA = "edgekit.profile/1"
RUN_SCHEMA = "edgekit.run/1"
SIDECAR_SCHEMA = "edgekit.artifact/1"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


Num = Optional[float | int]


class _Model(_Doc):
    path: str
    sha256: str
    format: str
    precision: Optional[str] = None
    size_bytes: Optional[int] = Field(None, ge=0)


class _Named(_Doc):
    name: Optional[str] = None
    cpu: Optional[str] = None


class _Settings(_Doc):
    threads: Optional[int] = None


class _Latency(_Doc):
    p50: Num = Field(None, ge=0)
    meaningful: bool = True


class _Memory(_Doc):
    peak_rss_mb: Num = None


class _Accuracy(_Doc):
    top1: float | int
    top5: Num = None
    n: int = Field(ge=0)
    dataset: Optional[str] = None
    degenerate: Optional[list[str]] = None


class _Fidelity(_Doc):
    top1_agreement: Num = None
    snr_db: Num = None
    reference: Optional[str] = None
    degenerate: Optional[dict[str, list[str]]] = None


class _Predictions(_Doc):
    dataset: Optional[str] = None
    subset: Optional[str] = None
    top1: list[int]


class _Provenance(_Doc):
    measured: Optional[str] = None
    date: Optional[str] = None
    runtime: Optional[str] = None
    runtime_version: Optional[str] = None


class Profile(_Doc):
    schema_: str = Field(alias="schema")
    model: _Model
    device: _Named = _Named()
    settings: _Settings = _Settings()
    latency_ms: _Latency = _Latency()
    memory: _Memory = _Memory()
    accuracy: Optional[_Accuracy] = None
    reference_accuracy: Optional[_Accuracy] = None
    fidelity: Optional[_Fidelity] = None
    predictions: Optional[_Predictions] = None
    provenance: _Provenance = _Provenance()


class _Output(_Doc):
    path: str
    sha256: Optional[str] = None
    size_bytes: Optional[int] = Field(None, ge=0)
    cache_path: Optional[str] = None


class _Stage(_Doc):
    index: int
    id: str
    stage: str
    cached: bool
    seconds: Num = None
    command: str
    output: _Output


class _Gate(_Doc):
    gate: str
    passed: bool


class Run(_Doc):
    schema_: str = Field(alias="schema")
    name: str
    status: str
    run_dir: str
    started: str
    wall_s: Num = None
    recipe: _Named = _Named()
    stages: list[_Stage]
    gates: list[_Gate]


class _Shape(_Doc):
    shape: Optional[list[Optional[int]]] = None


Numbers = Optional[float | int | list[float | int]]


class _Preprocessing(_Doc):  # data.normaliser checks the values (sizes, a zero std)
    channel_order: Optional[str] = None
    mean: Numbers = None
    std: Numbers = None
    scale: Numbers = None
    offset: Numbers = None


class Sidecar(_Doc):
    schema_: str = Field(alias="schema")
    sha256: str
    format: Optional[str] = None
    precision: Optional[str] = None
    size_bytes: Optional[int] = Field(None, ge=0)
    params: Optional[int] = Field(None, ge=0)
    labels: Optional[list[str]] = None
    preprocessing: Optional[_Preprocessing] = None
    input: Optional[_Shape] = None
    output: Optional[_Shape] = None
    spec: Optional[dict] = None
    parent: Optional[dict] = None
    stage: Optional[dict] = None


_MODELS = {PROFILE_SCHEMA: Profile, RUN_SCHEMA: Run, SIDECAR_SCHEMA: Sidecar}


def check(doc: Any, path: Path, schema: str | None = None) -> dict:
    """``doc`` once it fits its schema (``schema``, else the one it names), with every field
    edgekit reads present (None where the document left out an optional one)."""
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: not an edgekit JSON document")
    name = schema or doc.get("schema")
    if doc.get("schema") != name or name not in _MODELS:
        raise BadInput(f"{path}: not an {schema} document" if schema else
                       f"{path}: unknown schema {str(name)[:60]!r}")
    try:
        checked = _MODELS[name].model_validate(doc).model_dump(by_alias=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BadInput(f"{path}: not a valid {name} document ({where}: "
                       f"{err['msg'].removeprefix('Value error, ')})") from None
    if name == SIDECAR_SCHEMA and doc.get("spec") is not None:
        from .costmodel import spec_work
        from .models.spec import spec_from_dict

        try:  # the spec's numbers must make a network the cost model can walk
            spec_work(spec_from_dict(doc["spec"]))
        except BadInput as exc:
            raise BadInput(f"{path}: spec: {exc}") from None
        except (TypeError, KeyError, ValueError, AttributeError, IndexError, ArithmeticError,
                StopIteration) as exc:
            raise BadInput(f"{path}: spec is not an architecture "
                           f"({exc.__class__.__name__}: {str(exc)[:80]})") from None
    return checked
