"""Latency statistics, accuracy and fidelity: the numbers in a profile result."""

from __future__ import annotations

import numpy as np


def latency_stats(times_ms: list[float]) -> dict[str, float | int]:
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        return {"count": 0}
    pct = np.percentile(t, [50, 90, 99])
    return {"count": int(t.size), "mean": float(t.mean()), "std": float(t.std()),
            "min": float(t.min()), "p50": float(pct[0]), "p90": float(pct[1]),
            "p99": float(pct[2]), "max": float(t.max())}


def accuracy(scores: np.ndarray, labels: np.ndarray) -> dict[str, float | int]:
    """Top-1 and top-5 accuracy in percent."""
    scores = np.asarray(scores).reshape(len(labels), -1)
    k = min(5, scores.shape[1])
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top1 = float((topk[:, 0] == labels).mean() * 100)
    top5 = float((topk == labels[:, None]).any(axis=1).mean() * 100)
    return {"top1": top1, "top5": top5, "n": int(len(labels))}


def fidelity(scores: np.ndarray, reference: np.ndarray,
             labels: np.ndarray | None = None, classes: bool = True) -> dict:
    """Agreement with a reference model on the same inputs: top-1 agreement (%) and the
    output signal-to-noise ratio in dB (10 log10 of reference power over error power).
    ``meaningful`` is False, with the reasons under ``degenerate``, when either side's
    outputs could not tell a good model from a broken one (see :func:`degenerate`). Outputs
    that are not class scores (``classes`` False) get no agreement, only SNR and difference."""
    a = np.asarray(scores, np.float64).reshape(len(reference), -1)
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    agree = float((a.argmax(1) == r.argmax(1)).mean() * 100) if classes else None
    noise = float(((a - r) ** 2).sum())
    signal = float((r ** 2).sum())
    # Identical outputs have no finite SNR; JSON has no infinity, so say it in words.
    snr = None if noise == 0 else float(10 * np.log10(signal / noise))
    flags = {k: v for k, v in (("model", degenerate(a, labels, classes)),
                               ("reference", degenerate(r, labels, classes))) if v}
    return {"top1_agreement": agree, "snr_db": snr, "identical": noise == 0,
            "max_abs_diff": float(np.abs(a - r).max()), "n": int(len(r)),
            "meaningful": not flags, "degenerate": flags}


# Outputs whose spread over the images is below this share of their magnitude are constant.
_CONSTANT_RELATIVE_SPREAD = 1e-3


def degenerate(scores: np.ndarray, labels: np.ndarray | None = None,
               classes: bool = True) -> list[str]:
    """Why these outputs (one row per image) cannot vouch for a model: they do not change with
    the input, every image gets the same class, or (with labels) top-1 is not above chance:
    within three standard errors of always answering the commonest class. [] when usable."""
    s = np.asarray(scores, np.float64).reshape(len(scores), -1)
    if len(s) < 2:
        return []
    reasons = []
    spread = float(np.ptp(s, axis=0).max())
    if spread <= _CONSTANT_RELATIVE_SPREAD * max(float(np.abs(s).mean()), 1e-12):
        reasons.append(f"outputs do not change with the input (spread {spread:.2g} over "
                       f"{len(s)} images)")
    if not classes:
        return reasons
    top = s.argmax(1)
    if len(np.unique(top)) == 1 and (labels is None or len(np.unique(labels)) > 1):
        reasons.append(f"every one of the {len(s)} images is given class {int(top[0])}")
    if labels is not None and len(labels) == len(s):
        labels = np.asarray(labels)
        chance = float(np.bincount(labels).max() / len(labels))
        top1 = float((top == labels).mean())
        bound = chance + 3 * float(np.sqrt(chance * (1 - chance) / len(labels)))
        if top1 <= bound:
            reasons.append(f"top-1 {100 * top1:.1f}% is at chance (the commonest class is "
                           f"{100 * chance:.1f}% of the {len(labels)} images)")
    return reasons
