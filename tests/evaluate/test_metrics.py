import numpy as np
import pytest

from edgekit.evaluate.metrics import accuracy, fidelity, latency_stats


def test_latency_stats_matches_numpy():
    t = [5.0, 1.0, 3.0, 2.0, 4.0]
    s = latency_stats(t)
    assert s["count"] == 5 and s["min"] == 1.0 and s["max"] == 5.0
    assert s["mean"] == 3.0 and s["p50"] == 3.0
    assert s["std"] == pytest.approx(np.std(t))
    assert s["p90"] == pytest.approx(np.percentile(t, 90))
    assert latency_stats([]) == {"count": 0}


def test_accuracy_top1_top5():
    scores = np.eye(10)[[0, 1, 2, 3]] + np.linspace(0, 0.5, 10)  # argmax = diagonal
    labels = np.array([0, 1, 9, 9])
    a = accuracy(scores, labels)
    assert a["top1"] == 50.0 and a["n"] == 4
    # class 9 has the highest background score, so it is in every top-5
    assert a["top5"] == 100.0


def test_fidelity_identical_and_noisy():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 10))
    same = fidelity(ref, ref)
    assert same["identical"] and same["snr_db"] is None and same["top1_agreement"] == 100.0
    noisy = fidelity(ref + 0.1 * rng.normal(size=ref.shape), ref)
    assert 15 < noisy["snr_db"] < 25  # noise power 1% of signal -> about 20 dB
    assert not noisy["identical"]
