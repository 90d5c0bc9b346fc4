"""``edgekit compare``: two ``edgekit.profile/1`` results side by side, gated by thresholds.

Pure Python on the JSON documents (no numpy), so a CI job pays nothing to import it.

What is compared, and when a change is a regression:

* **accuracy** (top-1, points): a drop larger than ``max_accuracy_drop``. Only between results
  on the same dataset and subset; anything else is not comparable (an error, exit 2). The
  default, 0.5 points, is for like against like (an emulated run against an emulated
  baseline: the emulator is deterministic). Across ISAs int8 kernels round differently: on
  1,000 Fashion-MNIST test images a MobileNetV2 int8 model gave 81.4% on x86 and 82.2% on
  emulated Arm64, its runs agreeing on 97.0% of images (83.7% for a barely trained model),
  while each agreed with the float model on 96.8% (benchmarks/emulator_accuracy.py). Gate
  cross-ISA comparisons with a wider tolerance, or better, against a baseline of the same ISA.
* **fidelity** (top-1 agreement with the reference, points): a drop larger than
  ``max_agreement_drop`` when both results have one.
* **latency** (p50) and **memory** (peak RSS): growth beyond ``max_latency_regression`` /
  ``max_memory_growth`` percent, only when both were measured on the same CPU with the same
  thread count and neither result says its performance figures are not meaningful (the
  emulator: qemu's own memory and speed); otherwise reported as not compared.
* **size** (bytes): growth beyond ``max_size_growth`` percent.
* **usable outputs**: a result whose outputs are degenerate (constant, one class for every
  image, top-1 at chance; flagged by ``edgekit profile``) fails, in base or new: agreement
  between broken models proves nothing.
* **run agreement** (share of images whose top-1 class is the same in both results,
  same data only): reported always, a gate only with ``min_prediction_agreement`` (100 for a
  deterministic like-against-like run).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core.errors import BadInput

from ..core.results import PROFILE_SCHEMA as SCHEMA, check


@dataclass(frozen=True)
class Limits:
    max_accuracy_drop: float = 0.5  # points of top-1
    max_agreement_drop: float = 1.0  # points of top-1 agreement with the reference
    max_latency_regression: float = 10.0  # percent of p50
    max_size_growth: float = 5.0  # percent
    max_memory_growth: float = 20.0  # percent of peak RSS
    min_prediction_agreement: float | None = None  # percent; None: report only


def load_result(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{path}: not a JSON profile result ({e.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise BadInput(f"{path}: not an {SCHEMA} document (write one with `edgekit profile "
                       f"MODEL -o {path.name}`)")
    return check(doc, path, SCHEMA)


def parse_percent(text: str, option: str) -> float:
    try:
        value = float(str(text).strip().rstrip("%"))
    except ValueError:
        raise BadInput(f"{option} {text!r} is not a percentage (e.g. 10 or 10%)") from None
    if not math.isfinite(value) or value < 0:
        raise BadInput(f"{option} must be a finite percentage, not negative (got {text})")
    return value


def _row(metric: str, unit: str, base: float | None, new: float | None, change: float | None,
         limit: str, status: str, note: str = "") -> dict[str, Any]:
    return {"metric": metric, "unit": unit, "base": base, "new": new, "change": change,
            "limit": limit, "status": status, "note": note}


def _growth(metric: str, unit: str, base: float | None, new: float | None, limit: float,
            skip: str = "") -> dict[str, Any]:
    if base is None or new is None:
        return _row(metric, unit, base, new, None, f"+{limit:g}%", "skipped",
                    "missing in " + ("both" if base is None and new is None
                                     else "base" if base is None else "new"))
    change = 100.0 * (new / base - 1.0) if base else 0.0
    if skip:
        return _row(metric, unit, base, new, change, f"+{limit:g}%", "skipped", skip)
    return _row(metric, unit, base, new, change, f"+{limit:g}%",
                "REGRESSION" if change > limit + 1e-9 else "ok")


def _drop(metric: str, base: float | None, new: float | None, limit: float) -> dict[str, Any]:
    if base is None or new is None:
        return _row(metric, "%", base, new, None, f"-{limit:g} pt", "skipped",
                    "missing in " + ("both" if base is None and new is None
                                     else "base" if base is None else "new"))
    change = new - base
    return _row(metric, "%", base, new, change, f"-{limit:g} pt",
                "REGRESSION" if -change > limit + 1e-9 else "ok")


def _get(doc: dict, *keys: str) -> Any:
    for k in keys:
        if not isinstance(doc, dict) or doc.get(k) is None:
            return None
        doc = doc[k]
    return doc


def _agreement(bp: dict | None, np_: dict | None, limit: float | None) -> dict[str, Any]:
    shown = "report" if limit is None else f">={limit:g}%"
    if not bp or not np_ or (bp.get("dataset"), bp.get("subset"), len(bp["top1"])) != (
            np_.get("dataset"), np_.get("subset"), len(np_["top1"])):
        return _row("run agreement", "%", None, None, None, shown, "skipped",
                    "needs per-image predictions on the same data in both")
    same = sum(a == b for a, b in zip(bp["top1"], np_["top1"]))
    pct = 100.0 * same / max(1, len(bp["top1"]))
    status = "ok" if limit is None or pct >= limit - 1e-9 else "REGRESSION"
    return _row("run agreement", "%", 100.0, pct, pct - 100.0, shown, status,
                f"{len(bp['top1']) - same} of {len(bp['top1'])} images differ")


def degenerate_reasons(doc: dict) -> list[str]:
    """What a profile result says makes its accuracy or fidelity unable to vouch for a model
    (outputs constant, one class for every image, top-1 at chance)."""
    out = [f"model: {r}" for r in (_get(doc, "accuracy", "degenerate") or [])]
    for who, reasons in (_get(doc, "fidelity", "degenerate") or {}).items():
        out += [f"{who}: {r}" for r in reasons if f"{who}: {r}" not in out]
    return out


def _usable(base: dict, new: dict) -> dict[str, Any]:
    """A gate on degenerate outputs in either result: agreement or a small drop between
    broken models proves nothing."""
    notes = [f"{which} {r}" for doc, which in ((base, "base"), (new, "new"))
             for r in degenerate_reasons(doc)]
    return _row("usable outputs", "", None, None, None, "not degenerate",
                "REGRESSION" if notes else "ok", "; ".join(notes))


def compare(base: dict[str, Any], new: dict[str, Any], limits: Limits = Limits()) -> dict:
    """Rows for every metric and whether ``new`` passes ``limits`` against ``base``."""
    rows = []
    ba, na = base.get("accuracy"), new.get("accuracy")
    if ba and na and (ba.get("dataset"), ba.get("subset"), ba.get("n")) != (
            na.get("dataset"), na.get("subset"), na.get("n")):
        raise BadInput(f"accuracy was measured on different data ({ba.get('dataset')}, "
                       f"{ba.get('subset')}, n={ba.get('n')} vs {na.get('dataset')}, "
                       f"{na.get('subset')}, n={na.get('n')}): not comparable")
    rows.append(_drop("top-1", _get(base, "accuracy", "top1"),
                      _get(new, "accuracy", "top1"), limits.max_accuracy_drop))
    rows.append(_drop("ref agreement", _get(base, "fidelity", "top1_agreement"),
                      _get(new, "fidelity", "top1_agreement"), limits.max_agreement_drop))
    rows.append(_agreement(base.get("predictions"), new.get("predictions"),
                           limits.min_prediction_agreement))
    skip = ""
    for doc, which in ((base, "base"), (new, "new")):
        if _get(doc, "latency_ms", "meaningful") is False:
            skip = f"{which}: performance not meaningful ({doc['latency_ms'].get('note', '')})"
    if not skip and (_get(base, "device", "cpu"), _get(base, "settings", "threads")) != (
            _get(new, "device", "cpu"), _get(new, "settings", "threads")):
        skip = "measured on different CPUs or thread counts"
    rows.append(_growth("latency p50", "ms", _get(base, "latency_ms", "p50"),
                        _get(new, "latency_ms", "p50"), limits.max_latency_regression, skip))
    rows.append(_growth("size", "bytes", _get(base, "model", "size_bytes"),
                        _get(new, "model", "size_bytes"), limits.max_size_growth))
    rows.append(_growth("peak memory", "MB", _get(base, "memory", "peak_rss_mb"),
                        _get(new, "memory", "peak_rss_mb"), limits.max_memory_growth, skip))
    rows.append(_usable(base, new))
    failed = [r["metric"] for r in rows if r["status"] == "REGRESSION"]
    return {"schema": "edgekit.compare/1", "passed": not failed, "regressions": failed,
            "limits": asdict(limits), "rows": rows,
            "base": {"model": _get(base, "model", "path"), "device": _get(base, "device", "name")},
            "new": {"model": _get(new, "model", "path"), "device": _get(new, "device", "name")}}
