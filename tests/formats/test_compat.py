"""Op-by-op runtime checks (inspect --check) on models built to contain what each runtime
cannot run, and the fp16 GPU export that records its check."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpu_unfriendly(workdir):
    """A float TFLite model with a 5-D tensor and CONV_3D (not in the GPU delegate), a
    depthwise conv with depth multiplier 2 on 8 channels (GPU: multiplier 1 only), and
    supported convs before and after, so the supported ops form two partitions."""
    import keras

    from edgekit.core.artifacts import Artifact
    from edgekit.formats.tflite import convert_tflite

    keras.utils.set_random_seed(0)
    x = inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    x = keras.layers.Reshape((16, 16, 16, 1))(x)
    x = keras.layers.Conv3D(2, 3, padding="same")(x)
    x = keras.layers.Reshape((16, 16, 32))(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inp, out)
    path = workdir / "gpu_unfriendly.tflite"
    path.write_bytes(convert_tflite(Artifact(workdir / "x.keras", "keras"), "fp32", model=model))
    return path


def _check(path, which):
    return json.loads(run_cli("inspect", path, "--check", which, "--json", check=True).stdout)["checks"][which]


def test_gpu_check_flags_unsupported_ops_and_fallback_share(gpu_unfriendly):
    r = _check(gpu_unfriendly, "gpu")
    reasons = {u["op"]: u["reason"] for u in r["unsupported"]}
    assert "not supported" in reasons["CONV_3D"] or "rank 5" in reasons["CONV_3D"]
    assert "depth multiplier" in reasons["DEPTHWISE_CONV_2D"]
    assert any("rank 5" in u["reason"] for u in r["unsupported"] if u["op"] == "RESHAPE")
    assert {"CONV_2D", "FULLY_CONNECTED", "MEAN", "SOFTMAX"}.isdisjoint(reasons)
    # CONV_3D holds most MACs; the first two convs sit outside the one delegated partition
    assert 0.3 < r["unsupported_macs_share"] < r["cpu_macs_share"] < 1.0
    assert r["partition"]["count"] == 2
    text = run_cli("inspect", gpu_unfriendly, "--check", "gpu", check=True).stderr
    assert "CONV_3D" in text and "left on the CPU" in text


def test_gpu_export_is_fp16_and_records_its_check(workdir, trained_keras):
    out = workdir / "gpu_fp16.tflite"
    doc = json.loads(run_cli("export", trained_keras, "--target", "gpu", "-o", out, "--json",
                             check=True).stdout)
    assert doc["precision"] == "fp16" and doc["compat"]["check"] == "gpu"
    assert doc["compat"]["unsupported"] == [] and doc["compat"]["cpu_macs_share"] == 0
    info = json.loads(run_cli("inspect", out, "--json", check=True).stdout)
    assert info["precision"] == "fp16"


def test_xnnpack_check_finds_int8_hard_swish(workdir):
    """MobileNetV3's int8 HARD_SWISH has no XNNPACK kernel (it runs on reference kernels):
    the check names it in an all-int8 file; edgekit's default file runs it in float islands,
    which XNNPACK takes."""
    keras_path, tfl = workdir / "v3s.keras", workdir / "v3s_int8.tflite"
    run_cli("zoo", "build", "mobilenet_v3_small", "--width", "0.5", "--resolution", "32",
            "--classes", "10", "-o", keras_path, "--force", check=True)
    for islands in ("--no-float-islands", "--float-islands"):
        run_cli("quantize", keras_path, "--mode", "int8", "--calib",
                "fashion-mnist-sample:train", "--calib-size", "20", "--no-speed-check",
                islands, "-o", tfl, "--force", check=True)
        ops = {u["op"] for u in _check(tfl, "xnnpack")["unsupported"]}
        assert "CONV_2D" not in ops and "DEPTHWISE_CONV_2D" not in ops
        assert ("HARD_SWISH" in ops) == (islands == "--no-float-islands"), ops


def test_tensorrt_check_flags_cpu_scheme_and_dynamic_shape(workdir, trained_keras):
    out = workdir / "trt_bad.onnx"
    run_cli("quantize", trained_keras, "--format", "onnx", "--mode", "int8", "--calib",
            "fashion-mnist-sample:train", "--calib-size", "20", "--no-speed-check", "-o", out,
            "--force", check=True)
    r = _check(out, "tensorrt")
    reasons = [u["reason"] for u in r["unsupported"]]
    assert any("dynamic shape" in x for x in reasons)
    assert any("int8 only" in x for x in reasons)  # uint8 activations: the CPU scheme


def test_check_format_mismatch_exits_2(gpu_unfriendly, trained_keras):
    for model, which in ((gpu_unfriendly, "tensorrt"), (trained_keras, "gpu"), (gpu_unfriendly, "npu")):
        proc = run_cli("inspect", model, "--check", which)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
