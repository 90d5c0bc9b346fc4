"""The device catalog: ``DeviceProfile`` (pydantic) validated from ``devices/NAME.yaml``.

Every number carries its provenance. In YAML a number is either plain (it then takes the
``provenance`` of the nearest enclosing section) or ``{value: X, provenance: ...}``. A
provenance is ``{kind: published, source}``, ``{kind: measured, date, command}`` or
``{kind: estimated, how}``, or the name of an entry in the file's top-level ``sources``.

Profiles are looked up in the user's override folder first (``$EDGEKIT_HOME/devices``,
default ``~/.config/edgekit/devices``; ``edgekit calibrate`` writes there), then in the
packaged catalog (``edgekit/catalog/devices``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, field_validator,
                      model_validator)

from .errors import BadInput

SCHEMA = "edgekit.device/1"
CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalog" / "devices"
RUNTIMES = ("tflite-xnnpack", "tflite-gpu", "tflite-nnapi", "onnxruntime-cpu",
            "onnxruntime-cuda", "tensorrt")
from .registry import PRECISIONS  # noqa: E402
ISA_FEATURES = ("neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2",
                "sse4_2", "fma", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Provenance(_Strict):
    kind: Literal["published", "measured", "estimated"]
    source: Optional[str] = None  # published: the citation
    date: Optional[str] = None  # measured: when
    command: Optional[str] = None  # measured: what ran
    how: Optional[str] = None  # estimated: how the number was derived

    @field_validator("date", mode="before")
    @classmethod
    def _iso_date(cls, v: Any) -> Any:
        return v.isoformat() if hasattr(v, "isoformat") else v  # YAML reads 2026-11-30 as a date

    @model_validator(mode="after")
    def _complete(self) -> "Provenance":
        need = {"published": ("source",), "measured": ("date", "command"),
                "estimated": ("how",)}[self.kind]
        missing = [f for f in need if not (getattr(self, f) or "").strip()]
        if missing:
            raise ValueError(f"{self.kind} provenance needs {' and '.join(missing)}")
        return self

    def text(self) -> str:
        if self.kind == "published":
            return str(self.source)
        if self.kind == "measured":
            return f"{self.date}: {self.command}"
        return str(self.how)


ProvRef = Union[Provenance, str]  # a str names an entry of the profile's ``sources``


class Num(_Strict):
    """A number and where it comes from. No fact of a device is negative, NaN or infinite."""

    value: float = Field(ge=0, allow_inf_nan=False)
    provenance: Optional[ProvRef] = None
    note: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, data: Any) -> Any:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return {"value": data}
        return data

    @property
    def prov(self) -> Provenance:
        assert isinstance(self.provenance, Provenance), "unresolved provenance"
        return self.provenance


class Cluster(_Strict):
    cores: Num
    core: str
    max_ghz: Num
    provenance: Optional[ProvRef] = None

    @model_validator(mode="after")
    def _positive(self) -> "Cluster":
        if self.cores.value < 1 or self.max_ghz.value <= 0:
            raise ValueError("a cluster needs at least 1 core and a positive max_ghz")
        return self


class Cpu(_Strict):
    clusters: list[Cluster] = Field(min_length=1)
    isa: list[str] = Field(default_factory=list)
    provenance: Optional[ProvRef] = None

    @field_validator("isa")
    @classmethod
    def _known_isa(cls, v: list[str]) -> list[str]:
        bad = [f for f in v if f not in ISA_FEATURES]
        if bad:
            raise ValueError(f"unknown ISA feature {bad[0]!r} (known: {', '.join(ISA_FEATURES)})")
        return v

    @property
    def cores(self) -> int:
        return int(sum(c.cores.value for c in self.clusters))

    def summary(self) -> str:
        return " + ".join(f"{c.cores.value:g}x {c.core} {c.max_ghz.value:g} GHz"
                          for c in self.clusters)


class Gpu(_Strict):
    name: str
    api: list[Literal["opencl", "vulkan", "cuda", "opengl"]] = Field(min_length=1)
    cores: Optional[Num] = None  # shader cores / CUDA cores
    tensor_cores: Optional[Num] = None
    max_ghz: Optional[Num] = None
    provenance: Optional[ProvRef] = None


Precision = Literal[PRECISIONS]  # type: ignore[valid-type]


class DeviceBudget(_Strict):
    """A device profile's default budget, each number with its provenance."""

    latency_ms: Num
    memory_mb: Num
    size_mb: Num
    precision: Precision
    accelerator: Literal["cpu", "gpu", "npu"]
    runtime: Literal[RUNTIMES]  # type: ignore[valid-type]
    threads: Num
    provenance: Optional[ProvRef] = None

    @model_validator(mode="after")
    def _positive(self) -> "DeviceBudget":
        for f in ("latency_ms", "memory_mb", "size_mb", "threads"):
            if getattr(self, f).value <= 0:
                raise ValueError(f"default_budget.{f} must be positive")
        return self


class Fitted(_Strict):
    """Latency-feature coefficients (ms per unit of each ``edgekit.estimate.latency.FEATURES``) fitted
    by ``edgekit calibrate`` at one thread count."""

    coefficients: dict[str, Num]
    expected_error_pct: Num  # 90th percentile of the leave-one-out errors
    measurements: int
    llc_mb: Optional[Num] = None  # last-level cache the harness read (latency feature spill_mb)
    provenance: Optional[ProvRef] = None


class CostEntry(_Strict):
    """The cost model of one runtime/precision: a MAC rate (``gmacs_per_s_1t``,
    ``gmacs_per_s_mt`` at ``mt_threads``, ``gmacs_per_s`` for accelerators, ``overhead_ms``)
    and/or feature coefficients fitted by calibration, keyed by thread count."""

    coefficients: dict[str, Num] = Field(default_factory=dict)
    expected_error_pct: Optional[Num] = None  # of the rate model
    fitted: dict[str, Fitted] = Field(default_factory=dict)
    provenance: Optional[ProvRef] = None


class Anchor(_Strict):
    """A published latency figure, on this device or on ``measured_on`` (a relative)."""

    model: str
    precision: Precision
    runtime: str  # as published, e.g. tflite-xnnpack, tflite-gpu
    threads: Optional[int] = None  # CPU threads; none for GPU figures
    measured_on: str
    latency_ms: Num
    accuracy_top1: Optional[Num] = None
    macs_m: Optional[Num] = None
    scale_to_device: Optional[Num] = None  # expected here = latency_ms * scale_to_device
    provenance: Optional[ProvRef] = None

    @property
    def expected_ms(self) -> Optional[float]:
        if self.scale_to_device is None:
            return None
        return self.latency_ms.value * self.scale_to_device.value


class DeviceProfile(_Strict):
    name: str
    display_name: str
    kind: Literal["phone", "sbc", "jetson", "host", "emulator"]
    soc: str
    runner: Optional[Literal["local", "ssh", "adb", "emulator"]] = None  # how it is reached
    sources: dict[str, Provenance] = Field(default_factory=dict)
    cpu: Cpu
    gpu: Optional[Gpu] = None
    memory_gb: Num
    runtimes: list[Literal[RUNTIMES]] = Field(min_length=1)  # type: ignore[valid-type]
    default_budget: DeviceBudget
    cost_model: dict[str, CostEntry] = Field(default_factory=dict)
    anchors: list[Anchor] = Field(default_factory=list)
    notes: Optional[str] = None
    _path: Optional[str] = PrivateAttr(default=None)  # set by the loader
    _origin: Optional[str] = PrivateAttr(default=None)  # "user", "catalog" or "file"

    @property
    def path(self) -> Optional[str]:
        return self._path

    @property
    def origin(self) -> Optional[str]:
        return self._origin

    @model_validator(mode="after")
    def _check(self) -> "DeviceProfile":
        for key in self.cost_model:
            runtime, _, precision = key.partition("/")
            if runtime not in self.runtimes or precision not in PRECISIONS:
                raise ValueError(f"cost_model key {key!r} must be RUNTIME/PRECISION with a "
                                 f"runtime of this device ({', '.join(self.runtimes)}) and a "
                                 f"precision in {', '.join(PRECISIONS)}")
        if self.default_budget.runtime not in self.runtimes:
            raise ValueError(f"default_budget.runtime {self.default_budget.runtime!r} is not "
                             "in runtimes")
        _resolve(self, None, self.sources, "")
        return self

    def numbers(self) -> Iterator[tuple[str, Num]]:
        """Every number of the profile as (dotted path, Num), provenance resolved."""
        yield from _walk(self, "")

    def provenance_counts(self) -> dict[str, int]:
        counts = {"published": 0, "estimated": 0, "measured": 0}
        for _, num in self.numbers():
            counts[num.prov.kind] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        b = self.default_budget
        return {"name": self.name, "display_name": self.display_name, "kind": self.kind,
                "soc": self.soc, "cpu": self.cpu.summary(), "cores": self.cpu.cores,
                "isa": self.cpu.isa, "gpu": self.gpu.name if self.gpu else None,
                "memory_gb": self.memory_gb.value, "runtimes": list(self.runtimes),
                "default_budget": {"latency_ms": b.latency_ms.value,
                                   "memory_mb": b.memory_mb.value, "size_mb": b.size_mb.value,
                                   "precision": b.precision, "accelerator": b.accelerator,
                                   "runtime": b.runtime, "threads": int(b.threads.value)},
                "origin": self.origin, "path": self.path}

    def coefficient(self, runtime: str, precision: str, name: str) -> Optional[float]:
        entry = self.cost_model.get(f"{runtime}/{precision}")
        num = entry.coefficients.get(name) if entry else None
        return None if num is None else num.value


def _children(model: BaseModel) -> Iterator[tuple[str, Any]]:
    for field in type(model).model_fields:
        if field in ("provenance", "sources"):
            continue
        value = getattr(model, field)
        if isinstance(value, list):
            for i, v in enumerate(value):
                yield f"{field}.{i}", v
        elif isinstance(value, dict):
            for k, v in value.items():
                yield f"{field}.{k}", v
        else:
            yield field, value


def _resolve(model: BaseModel, inherited: Optional[Provenance], sources: dict, path: str) -> None:
    own = getattr(model, "provenance", None)
    if isinstance(own, str):
        if own not in sources:
            raise ValueError(f"{path or 'profile'}: provenance {own!r} is not in sources "
                             f"(known: {', '.join(sources) or 'none'})")
        own = sources[own]
        model.provenance = own  # type: ignore[attr-defined]
    current = own or inherited
    if isinstance(model, Num):
        if current is None:
            raise ValueError(f"{path}: number {model.value:g} has no provenance (give it one "
                             "or give its section a provenance)")
        model.provenance = current
        return
    for name, child in _children(model):
        if isinstance(child, BaseModel):
            _resolve(child, current, sources, f"{path}.{name}" if path else name)


def _walk(model: BaseModel, path: str) -> Iterator[tuple[str, Num]]:
    if isinstance(model, Num):
        yield path, model
        return
    for name, child in _children(model):
        if isinstance(child, BaseModel):
            yield from _walk(child, f"{path}.{name}" if path else name)


# --- loading ----------------------------------------------------------------------------

def user_dir() -> Path:
    """Where user-level profiles live (calibration writes here); may not exist."""
    home = os.environ.get("EDGEKIT_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".config" / "edgekit"
    return base / "devices"


def _search_path() -> list[tuple[str, Path]]:
    return [("user", user_dir()), ("catalog", CATALOG_DIR)]


def known_names() -> list[str]:
    names = set()
    for _, folder in _search_path():
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def device_path(name: str) -> Path:
    """The file a profile is loaded from: the user's override first, then the catalog."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise BadInput(f"bad device name {name!r}")
    for _, folder in _search_path():
        path = folder / f"{name}.yaml"
        if path.is_file():
            return path
    raise BadInput(f"unknown device '{name}' (known: {', '.join(known_names())})")


def load_profile_file(path: Path, origin: str = "file") -> DeviceProfile:
    """Validate one YAML file into a DeviceProfile; any problem is one-line BadInput."""
    from .yamlfile import load_validated

    path = Path(path)
    profile, _ = load_validated(path, DeviceProfile, "a device profile")
    if profile.name != path.stem:
        raise BadInput(f"{path}: name '{profile.name}' does not match the file name")
    profile._path, profile._origin = str(path), origin
    return profile


def load_device(name: str) -> DeviceProfile:
    path = device_path(name)
    origin = "user" if path.parent == user_dir() else "catalog"
    return load_profile_file(path, origin)


def list_devices() -> list[DeviceProfile]:
    return [load_device(n) for n in known_names()]


def profile_doc(profile: DeviceProfile) -> dict[str, Any]:
    """The ``edgekit.device/1`` JSON document for ``devices show --json``."""
    numbers = [{"path": p, "value": n.value, "provenance": n.prov.kind,
                "source": n.prov.text(), **({"note": n.note} if n.note else {})}
               for p, n in profile.numbers()]
    return {"schema": SCHEMA, "name": profile.name, "origin": profile.origin,
            "path": profile.path, "provenance_counts": profile.provenance_counts(),
            "profile": profile.model_dump(mode="json", exclude_none=True),
            "numbers": numbers,
            "anchors_expected_ms": {f"{i}": a.expected_ms for i, a in enumerate(profile.anchors)
                                    if a.expected_ms is not None}}
