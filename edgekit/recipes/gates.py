"""The gates of a recipe, checked after its stages: ``max_size_mb`` on the final model's file,
``max_accuracy_drop`` from the last profile with ``--data`` and ``--reference``, and
``max_latency_ms`` from a profile of the final model on the recipe's device, else predicted for
that device by the cost model (with its expected error). A gate that cannot be checked fails,
saying why, and so does an accuracy gate on a profile whose outputs are degenerate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..evaluate.compare import degenerate_reasons
from ..core.errors import BadInput
from .schema import Recipe

Step = Any  # a pipeline step: .id, .name, .makes_model, .record (its stage.json)

def evaluate_gates(recipe: Recipe, steps: list[Step]) -> list[dict]:
    """Each gate of the recipe against the final model and the last profile of it."""
    gates = recipe.gates
    models = [s for s in steps if s.makes_model and s.record]
    profiles = [_read(Path(s.record["output"]["path"])) for s in steps
                if s.name == "profile" and s.record]
    final = models[-1] if models else None
    names = {s.record["output"]["path"]: s.id for s in steps if s.record}
    out = []
    if gates.max_size_mb is not None and final is not None:
        mb = final.record["output"]["size_bytes"] / 1e6
        out.append(_gate("max_size_mb", mb, gates.max_size_mb, "MB",
                         f"file size of {final.id}, measured"))
    if gates.max_accuracy_drop is not None:
        both = [p for p in profiles if p.get("accuracy") and p.get("reference_accuracy")]
        if both:
            p = both[-1]
            drop = p["reference_accuracy"]["top1"] - p["accuracy"]["top1"]
            ref = names.get(p["fidelity"]["reference"], p["fidelity"]["reference"])
            model = names.get(p["model"]["path"], p["model"]["path"])
            gate = _gate("max_accuracy_drop", drop, gates.max_accuracy_drop, "pt",
                         f"top-1 of {ref} minus {model} on {p['accuracy']['dataset']} "
                         f"(n={p['accuracy']['n']}), measured")
            broken = degenerate_reasons(p)
            if broken:  # a small drop between broken models proves nothing
                gate.update(passed=False, detail=f"max_accuracy_drop: not meaningful "
                                                 f"({'; '.join(broken)})")
            out.append(gate)
        else:
            out.append(_unchecked("max_accuracy_drop", "no profile stage has --data and "
                                  "--reference to measure the drop with"))
    if gates.max_latency_ms is not None:
        out.append(_latency_gate(recipe, final, profiles, gates.max_latency_ms))
    return out


def _latency_gate(recipe: Recipe, final: Optional[Step], profiles: list[dict],
                  limit: float) -> dict:
    sha = final.record["output"]["sha256"] if final else None
    mine = [p for p in profiles if p["model"]["sha256"] == sha and
            p["latency_ms"].get("meaningful", True)]
    on_device = [p for p in mine if recipe.device and p["device"]["name"] == recipe.device]
    if on_device or (mine and not recipe.device):
        p = (on_device or mine)[-1]
        return _gate("max_latency_ms", p["latency_ms"]["p50"], limit, "ms",
                     f"median, measured on {p['provenance']['measured']}")
    if final is None or not recipe.device:
        return _unchecked("max_latency_ms", "no profile of the final model and no device to "
                          "predict for")
    return _predicted_latency(recipe.device, final, limit)


def _predicted_latency(device: str, final: Step, limit: float) -> dict:
    from ..core.artifacts import open_artifact
    from ..estimate.latency import predict_for_device

    meta = open_artifact(final.record["output"]["path"]).meta
    if "spec" not in meta:
        return _unchecked("max_latency_ms", f"{final.id} was not profiled on {device} and has "
                          "no architecture spec to predict its latency from")
    try:
        p = predict_for_device(device, meta["spec"], meta.get("precision"))
    except BadInput as exc:
        return _unchecked("max_latency_ms", str(exc))
    return _gate("max_latency_ms", p["latency_ms"], limit, "ms",
                 f"predicted for {device} ({p['runtime']}, {p['precision']}, {p['threads']} "
                 f"thread(s)), expected error ±{p['expected_error_pct']:.0f}%: {p['basis']}")


def _gate(name: str, value: float, limit: float, unit: str, basis: str) -> dict:
    passed = value <= limit
    return {"gate": name, "value": round(value, 4), "limit": limit, "unit": unit,
            "passed": passed, "basis": basis,
            "detail": f"{name}: {value:.3g} {unit} {'<=' if passed else '>'} {limit:g} {unit}"}


def _unchecked(name: str, why: str) -> dict:
    return {"gate": name, "value": None, "limit": None, "unit": None, "passed": False,
            "basis": why, "detail": f"{name}: not checked ({why})"}


def _read(path: Path) -> dict:
    """A profile result the run wrote, checked like ``compare`` checks one (it may have been
    edited or damaged since)."""
    from ..evaluate.compare import load_result

    return load_result(Path(path))
