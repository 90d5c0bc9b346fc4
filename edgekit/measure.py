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


def fidelity(scores: np.ndarray, reference: np.ndarray) -> dict[str, float | int]:
    """Agreement with a reference model on the same inputs: top-1 agreement (%) and the
    output signal-to-noise ratio in dB (10 log10 of reference power over error power)."""
    a = np.asarray(scores, np.float64).reshape(len(reference), -1)
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    agree = float((a.argmax(1) == r.argmax(1)).mean() * 100)
    noise = float(((a - r) ** 2).sum())
    signal = float((r ** 2).sum())
    # Identical outputs have no finite SNR; JSON has no infinity, so say it in words.
    snr = None if noise == 0 else float(10 * np.log10(signal / noise))
    return {"top1_agreement": agree, "snr_db": snr, "identical": noise == 0, "max_abs_diff": float(np.abs(a - r).max()),
            "n": int(len(r))}
