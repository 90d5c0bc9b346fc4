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
        from ..estimate.work import spec_work
        from ..models.spec import spec_from_dict

        try:  # the spec's numbers must make a network the cost model can walk
            spec_work(spec_from_dict(doc["spec"]))
        except BadInput as exc:
            raise BadInput(f"{path}: spec: {exc}") from None
        except (TypeError, KeyError, ValueError, AttributeError, IndexError, ArithmeticError,
                StopIteration) as exc:
            raise BadInput(f"{path}: spec is not an architecture "
                           f"({exc.__class__.__name__}: {str(exc)[:80]})") from None
    return checked


# --- typed results of the Python API ---------------------------------------------------------


class _View:
    """Attribute access to one section of a result document (read-only)."""

    def __init__(self, doc: dict):
        self._doc = doc

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._doc[name]
        except KeyError:
            raise AttributeError(f"no {name!r} in this result (it has: "
                                 f"{', '.join(self._doc)})") from None
        return _View(value) if isinstance(value, dict) else value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._doc!r})"

    def to_json(self) -> dict:
        """The section as the JSON document edgekit writes."""
        return self._doc


class Result(_View):
    """A stage's JSON document with attribute access (``inspect``, ``predict``,
    ``compare``); ``to_json()`` gives the document."""


class Latency(_View):
    """Latency statistics in milliseconds: ``p50_ms``, ``mean_ms``, ``p90_ms``, ``p99_ms``,
    ``min_ms``, ``max_ms``, ``std_ms``; ``count`` timed runs; ``meaningful`` is False where
    the runner's timings are not a device's (the emulator)."""

    def __getattr__(self, name: str) -> Any:
        if name.endswith("_ms"):
            return self._doc.get(name.removesuffix("_ms"))
        if name == "meaningful":
            return self._doc.get("meaningful", True)
        return super().__getattr__(name)


class ProfileResult(_View):
    """What ``edgekit.profile`` measured (an ``edgekit.profile/1`` document).

    ``latency`` (``.p50_ms`` ...), ``memory`` (``.peak_rss_mb``, ``.model_peak_mb``),
    ``accuracy`` (``.top1``, ``.top5``, ``.n``; None without data), ``fidelity``
    (``.top1_agreement``, ``.snr_db``, ``.max_abs_diff``; None without a reference),
    ``reference_accuracy``, ``model``, ``device``, ``settings``, ``provenance``; ``path``: the
    file it was written to, if any. ``to_json()`` gives the document."""

    def __init__(self, doc: dict, path: Optional[Path] = None):
        super().__init__(doc)
        self.path = path

    @property
    def latency(self) -> Latency:
        return Latency(self._doc["latency_ms"])

    def __getattr__(self, name: str) -> Any:
        if name in ("accuracy", "fidelity", "reference_accuracy") and not self._doc.get(name):
            return None
        return super().__getattr__(name)


class SearchResult(_View):
    """What ``edgekit.estimate.search`` found (an ``edgekit.scale/1`` document): ``chosen``,
    ``candidates``, ``budget``, ``latency_model``; ``artifact``: the model it wrote (None
    without an output). ``to_json()`` gives the document."""

    def __init__(self, doc: dict, artifact=None):
        super().__init__(doc)
        self.artifact = artifact
        self.path = artifact.path if artifact is not None else None


class RunResult(_View):
    """A recipe's run (an ``edgekit.run/1`` document, also its ``run.json``): ``status``,
    ``stages`` (each with its output and whether it came from the cache), ``gates``,
    ``run_dir``. ``to_json()`` gives the document."""

    @property
    def path(self) -> Path:
        return Path(self._doc["run_dir"]) / "run.json"
