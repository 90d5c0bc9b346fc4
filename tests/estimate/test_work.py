"""The work half of the cost model against real graphs: for every registered family, the
per-layer MACs and params computed from the spec alone must equal what ``edgekit.evaluate.analyze``
measures on the keras model the builder makes, and weight bytes must match TFLite files."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from edgekit.estimate.work import (bn_params, peak_activation_bytes, spec_work, totals,
                               weight_bytes)
from edgekit.models.families import get_spec
from edgekit.core.registry import FAMILIES

SMALL = {"width": 0.5, "resolution": 64, "classes": 10}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_spec_work_matches_keras_graph(family):
    import keras

    from edgekit.evaluate.analyze import _keras_layer  # analyze()'s own per-layer rule, in memory
    from edgekit.models.build import build_model

    spec = get_spec(family, **SMALL)
    model = build_model(spec)
    measured = [r for ly in model.layers for r in _keras_layer(ly, keras, [])]
    work = spec_work(spec)
    assert [(w.name, w.macs, w.params) for w in work] == \
        [(ly["name"], ly["macs"], ly["params"]) for ly in measured]
    assert totals(work)["macs"] == sum(ly["macs"] for ly in measured)
    assert totals(work)["params"] + bn_params(spec) == model.count_params()
    shapes = {ly.name: tuple(ly.output.shape[1:]) for ly in model.layers}
    for w in work:
        expect = shapes[w.name]
        assert (w.out_shape if len(expect) == 3 else (w.out_shape[2],)) == expect, w.name


def test_mobilenet_v2_224_published_figures():
    spec = get_spec("mobilenet_v2")
    t = totals(spec_work(spec))
    # measured from the graph by edgekit.evaluate.analyze (tests/evaluate/test_analyze.py); published 300 M
    assert t["macs"] == 300_774_272
    assert t["params"] + bn_params(spec) == 3_538_984
    # largest live set: block2a dwconv input 112x112x96 + output 56x56x96, fp32
    assert peak_activation_bytes(spec, 4) == 4 * (112 * 112 * 96 + 56 * 56 * 96)


def test_spec_work_is_fast_and_keras_free():
    code = ("import sys, time\n"
            "from edgekit.models.families import get_spec\n"
            "from edgekit.estimate.work import spec_work\n"
            "s = get_spec('efficientnet_b7')\n"
            "t = time.perf_counter(); spec_work(s); dt = time.perf_counter() - t\n"
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
            "print(dt)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert float(out.stdout) < 0.05
    t = time.perf_counter()
    for _ in range(100):
        spec_work(get_spec("efficientnet_b7"))
    assert (time.perf_counter() - t) / 100 < 0.05


def test_weight_bytes_match_tflite_file_sizes(tmp_path):
    import numpy as np
    import tensorflow as tf

    from edgekit.models.build import build_model

    spec = get_spec("mobilenet_v2", width=0.35, resolution=96, classes=10)
    model = build_model(spec)
    # Trained-like weights: the builder's fresh weights repeat across same-shaped layers and
    # its BN biases fold to zeros, which the converter de-duplicates (a smaller file).
    rng = np.random.default_rng(0)
    for v in model.weights:
        x = rng.normal(0, 0.1, v.shape).astype("float32")
        v.assign(np.abs(x) + 0.5 if "variance" in v.path else x)
    model.export(str(tmp_path / "sm"), verbose=False)

    def rep():
        rng = np.random.default_rng(0)
        for _ in range(10):
            yield [rng.random((1, 96, 96, 3), dtype=np.float32)]

    sizes = {}
    for precision in ("fp32", "int8"):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"))
        if precision == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        sizes[precision] = len(conv.convert())
    for precision, size in sizes.items():
        predicted = weight_bytes(spec, precision)
        print(f"{precision}: weight_bytes {predicted:,} vs .tflite {size:,} "
              f"({predicted / size - 1:+.1%})")
        assert abs(predicted - size) / size < 0.10
