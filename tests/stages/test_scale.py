"""`edgekit scale` and `edgekit calibrate` as a user runs them."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli


@pytest.fixture()
def home(tmp_path):
    return {"EDGEKIT_HOME": str(tmp_path / "home")}


def _json(proc):
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_defaults_come_from_the_device_budget(home):
    doc = _json(run_cli("scale", "--device", "pixel7", "--json", env=home))
    b = doc["budget"]
    assert (b["latency_ms"], b["precision"], b["runtime"], b["threads"]) == (20, "int8",
                                                                           "tflite-xnnpack", 4)
    assert doc["fitting"] > 0 and doc["candidates"]
    groups = {c["group"] for c in doc["candidates"]}
    assert groups <= {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small",
                      "mobilenet_v3_large", "efficientnet", "efficientnet_lite"}
    proxies = [c["accuracy_proxy"]["imagenet_top1_proxy"] for c in doc["candidates"]]
    assert proxies == sorted(proxies, reverse=True)
    for c in doc["candidates"]:
        assert c["fits"] and c["latency_ms"] <= 20 and c["size_mb"] <= 20
    assert doc["latency_model"]["provenance"] == "estimated"


def test_every_candidate_meets_explicit_budgets(home):
    doc = _json(run_cli("scale", "--device", "raspberry-pi-4", "--family", "mobilenet_v2",
                        "--memory-mb", "16", "--size-mb", "2", "--json", env=home))
    assert doc["families"] == ["mobilenet_v2"]
    for c in doc["candidates"]:
        assert c["group"] == "mobilenet_v2" and c["depth"] == 1.0
        assert c["peak_activation_mb"] <= 16 and c["size_mb"] <= 2
        assert c["latency_ms"] <= doc["budget"]["latency_ms"]


def test_gpu_accelerator_uses_the_gpu_runtime(home):
    doc = _json(run_cli("scale", "--device", "jetson-orin-nano", "--accelerator", "gpu",
                        "--precision", "fp16", "--json", env=home))
    assert doc["budget"]["runtime"] == "tensorrt" and doc["budget"]["precision"] == "fp16"


def test_efficientnet_search_covers_compound_scaling_and_off_it(home):
    doc = _json(run_cli("scale", "--device", "pixel7", "--family", "efficientnet_lite",
                        "--latency-ms", "8", "--precision", "int8", "--classes", "10",
                        "--top", "200", "--json", env=home))
    phis = [c["phi"] for c in doc["candidates"]]
    assert any(p is not None for p in phis) and any(p is None for p in phis)
    assert len({(c["width"], c["depth"]) for c in doc["candidates"]}) > 5


def test_nothing_fits_names_the_closest_candidate(home):
    proc = run_cli("scale", "--device", "raspberry-pi-4", "--latency-ms", "0.01", env=home)
    assert proc.returncode == 1
    assert "closest:" in proc.stderr and "latency" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_device_lists_known_ones(home):
    proc = run_cli("scale", "--device", "pixel99", env=home)
    assert proc.returncode == 2 and "pixel7" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,msg", [
    (["--family", "resnet"], "unknown family"),
    (["--latency-ms", "-1"], "must be positive"),
    (["--accelerator", "npu"], "cpu or gpu"),
    (["-o", "x.tflite"], ".keras"),
    (["--measure"], "needs a runner"),
])
def test_bad_input_is_one_line_exit_2(home, args, msg):
    proc = run_cli("scale", "--device", "pixel7", *args, env=home)
    assert proc.returncode == 2, proc.stderr
    assert msg in proc.stderr and "Traceback" not in proc.stderr


def test_writes_the_chosen_model_and_inherits_weights(home, tmp_path):
    import keras

    out = tmp_path / "scaled.keras"
    doc = _json(run_cli("scale", "--device", "raspberry-pi-4", "--family", "mobilenet_v2",
                        "--latency-ms", "15", "--classes", "10", "-o", out, "--json", env=home))
    side = json.loads((tmp_path / "scaled.keras.json").read_text())
    assert side["stage"]["name"] == "scale"
    assert side["scale"]["prediction"]["latency_ms"] == doc["chosen"]["latency_ms"]
    assert side["spec"]["resolution"] == doc["chosen"]["resolution"]
    model = keras.saving.load_model(out)
    assert model.output_shape == (None, 10)
    again = tmp_path / "again.keras"
    doc2 = _json(run_cli("scale", "--device", "raspberry-pi-4", "--from", out, "--latency-ms",
                         "100", "-o", again, "--json", env=home))
    assert doc2["families"] == ["mobilenet_v2"]  # --from picks the family and classes
    assert "inherited from" in doc2["output"]["inherited"]
    side2 = json.loads((tmp_path / "again.keras.json").read_text())
    assert side2["parent"]["sha256"] == side["sha256"]
    assert keras.saving.load_model(again).output_shape == (None, 10)


def test_a_resolution_change_inherits_every_weight():
    import numpy as np

    from edgekit.models.inherit import inherit as _inherit
    from edgekit.models.build import build_model
    from edgekit.models.families import get_spec

    src = build_model(get_spec("efficientnet_lite0", width=0.5, resolution=96, classes=10), seed=1)
    dst = build_model(get_spec("efficientnet_lite0", width=0.5, resolution=160, classes=10), seed=2)
    copied, total, misses = _inherit(src, dst)
    assert misses == []
    assert copied == total > 50
    np.testing.assert_array_equal(src.get_layer("block2a_expand_conv").get_weights()[0],
                                  dst.get_layer("block2a_expand_conv").get_weights()[0])
    wider = build_model(get_spec("efficientnet_lite0", width=0.75, resolution=96, classes=10))
    copied, total, misses = _inherit(src, wider)
    assert 0 < copied < total  # only the layers whose shapes did not change (stem, head...)
    assert len(misses) == total - copied and all("shapes" in why for _, why in misses)
