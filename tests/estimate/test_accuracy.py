"""The accuracy proxy reproduces the published references it interpolates and behaves."""

from __future__ import annotations

import pytest

from edgekit.models.families import get_spec
from edgekit.estimate.accuracy import REFERENCES, proxy_accuracy


@pytest.mark.parametrize("family,width,res,top1,_src", REFERENCES,
                         ids=[f"{r[0]}-{r[1]}-{r[2]}" for r in REFERENCES])
def test_reference_within_three_loo_errors(family, width, res, top1, _src):
    p = proxy_accuracy(get_spec(family, width=width, resolution=res, classes=10), family)
    assert abs(p.top1 - top1) <= max(3 * p.error, 1.0), (p.top1, top1, p.error)
    assert not p.extrapolated


def test_more_compute_never_lowers_the_proxy():
    tops = [proxy_accuracy(get_spec("mobilenet_v2", width=w, resolution=224), "mobilenet_v2").top1
            for w in (0.35, 0.5, 0.75, 1.0, 1.4)]
    assert tops == sorted(tops)


def test_no_credit_beyond_the_largest_reference():
    huge = proxy_accuracy(get_spec("mobilenet_v3_large", width=2.0, resolution=320),
                          "mobilenet_v3_large")
    ref = proxy_accuracy(get_spec("mobilenet_v3_large"), "mobilenet_v3_large")
    assert huge.extrapolated and huge.top1 <= ref.top1 + 0.5
    assert "not a measurement" in huge.as_dict()["what"]
