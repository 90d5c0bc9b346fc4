"""edgekit.evaluate.analyze: MACs, params and precision computed from Keras, TFLite and ONNX graphs."""

from __future__ import annotations

import os

import numpy as np
import pytest

from edgekit.evaluate.analyze import analyze
from edgekit.core.errors import BadInput

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _small_model():
    """MobileNetV2 0.35@96, 10 classes, with BN statistics and dense bias randomised.

    With keras' initial values (gamma=1, beta=0, mean=0, var=1, zero biases) the converters
    drop zero biases and de-duplicate identical constants, which says nothing about a
    trained model; random values make every folded constant distinct, like real weights.
    """
    import keras

    model = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), classes=10,
                                           weights=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, mu, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, mu.shape), rng.uniform(0.5, 1.5, var.shape)])
        elif isinstance(layer, keras.layers.Dense):
            k, b = layer.get_weights()
            layer.set_weights([k, rng.normal(0, 0.1, b.shape)])
    return model


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    import keras
    import tensorflow as tf
    import tf2onnx

    d = tmp_path_factory.mktemp("analyze")
    model = _small_model()
    model.save(d / "m.keras")
    model.export(str(d / "sm"), verbose=False)

    def convert(name, **settings):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(d / "sm"))
        for key, value in settings.items():
            if key == "supported_ops":
                conv.target_spec.supported_ops = value
            elif key == "supported_types":
                conv.target_spec.supported_types = value
            else:
                setattr(conv, key, value)
        (d / name).write_bytes(conv.convert())

    def rep():
        rng = np.random.default_rng(1)
        for _ in range(3):
            yield [rng.random((1, 96, 96, 3), dtype=np.float32)]

    default = [tf.lite.Optimize.DEFAULT]
    convert("fp32.tflite")
    convert("dynamic.tflite", optimizations=default)
    convert("fp16.tflite", optimizations=default, supported_types=[tf.float16])
    convert("int8.tflite", optimizations=default, representative_dataset=rep,
            supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8],
            inference_input_type=tf.int8, inference_output_type=tf.int8)
    convert("int16x8.tflite", optimizations=default, representative_dataset=rep,
            supported_ops=[
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8])
    tf2onnx.convert.from_keras(
        model, input_signature=(tf.TensorSpec((None, 96, 96, 3), tf.float32, name="input"),),
        opset=17, output_path=str(d / "m.onnx"))
    bn = [ly for ly in model.layers if isinstance(ly, keras.layers.BatchNormalization)]
    dw = [ly for ly in model.layers if isinstance(ly, keras.layers.DepthwiseConv2D)]
    return {"dir": d, "params": model.count_params(),
            "bn_channels": sum(int(ly.gamma.shape[0]) for ly in bn),
            "dw_channels": sum(int(ly.kernel.shape[2]) for ly in dw)}


def test_mobilenetv2_224_keras_macs_and_params(tmp_path):
    import keras

    model = keras.applications.MobileNetV2(alpha=1.0, input_shape=(224, 224, 3), classes=1000,
                                           weights=None)
    model.save(tmp_path / "m.keras")
    r = analyze(tmp_path / "m.keras", "keras")
    # computed: 300,774,272 MACs; published "1.0 MobileNetV2 224: 300 M MACs"
    # (tensorflow/models research/slim/nets/mobilenet README).
    assert r["macs"] == 300_774_272
    assert abs(r["macs"] - 300e6) / 300e6 < 0.01
    assert r["params"] == 3_538_984
    assert r["ops"]["Conv2D"] == 35 and r["ops"]["DepthwiseConv2D"] == 17
    kinds = {layer["kind"] for layer in r["layers"]}
    assert kinds == {"conv", "depthwise", "pointwise", "dense"}
    assert r["inputs"] == [{"name": r["inputs"][0]["name"], "shape": [None, 224, 224, 3],
                            "dtype": "float32"}]
    assert r["precision"] == "fp32" and r["size_bytes"] > 14_000_000


def test_same_macs_across_formats(small):
    d = small["dir"]
    k = analyze(d / "m.keras", "keras")
    t = analyze(d / "fp32.tflite", "tflite")
    o = analyze(d / "m.onnx", "onnx")
    # computed: 10,666,928 MACs in all three (published "0.35 MobileNetV2 96: 11 M MACs").
    assert k["macs"] == t["macs"] == o["macs"] == 10_666_928
    assert len(k["layers"]) == len(t["layers"]) == len(o["layers"]) == 53
    assert sorted(ly["macs"] for ly in k["layers"]) == sorted(ly["macs"] for ly in t["layers"])
    assert sorted(ly["macs"] for ly in k["layers"]) == sorted(ly["macs"] for ly in o["layers"])
    assert t["ops"]["CONV_2D"] == 35 and t["ops"]["DEPTHWISE_CONV_2D"] == 17
    assert o["ops"]["Conv"] == 52 and o["ops"]["MatMul"] == 1
    for r in (k, t, o):
        assert r["inputs"][0]["shape"] == [None, 96, 96, 3] and r["precision"] == "fp32"
        assert r["outputs"][0]["shape"] == [None, 10]


def test_params_after_bn_folding(small):
    d = small["dir"]
    keras_params, bn = small["params"], small["bn_channels"]
    assert keras_params == 423_018 and bn == 7_040
    # Keras counts BN's gamma, beta, mean, variance (4*C). The TFLite converter folds each BN
    # into the bias-less conv before it: the scale goes into the kernel, the shift becomes a
    # new bias of C. So TFLite holds 3*C fewer numbers per BN: 423,018 - 3*7,040 = 401,898.
    assert analyze(d / "fp32.tflite", "tflite")["params"] == keras_params - 3 * bn == 401_898
    # tf2onnx folds BN into the regular convs the same way, but after a depthwise conv it
    # leaves BN as Mul (scale, C) + Add (shift, C): one extra C per depthwise layer.
    onnx_params = analyze(d / "m.onnx", "onnx")["params"]
    assert onnx_params == keras_params - 3 * bn + small["dw_channels"]
    # the SavedModel reports the variables of its serving function: the Keras figure
    assert analyze(d / "sm", "savedmodel")["params"] == keras_params


@pytest.mark.parametrize("name,precision", [
    ("fp32.tflite", "fp32"), ("int8.tflite", "int8"), ("fp16.tflite", "fp16"),
    ("dynamic.tflite", "dynamic"), ("int16x8.tflite", "int16x8")])
def test_tflite_precision(small, name, precision):
    r = analyze(small["dir"] / name, "tflite")
    assert r["precision"] == precision
    assert r["macs"] == 10_666_928  # quantization does not change the work
    if precision == "fp16":
        # fp16 weights are DEQUANTIZE inputs; counted once, not again as the float copy
        assert r["ops"]["DEQUANTIZE"] > 0 and r["params"] == small["params"] - 3 * 7_040


def test_onnx_qdq_is_int8(small, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": np.random.default_rng(2).random(
                (1, 96, 96, 3), dtype=np.float32)}])

        def get_next(self):
            return next(self.batches, None)

    out = tmp_path / "q.onnx"
    quantize_static(str(small["dir"] / "m.onnx"), str(out), Reader(),
                    quant_format=QuantFormat.QDQ, per_channel=True)
    r = analyze(out, "onnx")
    assert r["precision"] == "int8" and r["ops"]["QuantizeLinear"] > 0
    assert r["macs"] == 10_666_928


def test_savedmodel_reports_io_without_macs(small):
    r = analyze(small["dir"] / "sm", "savedmodel")
    assert r["macs"] is None and r["notes"]
    assert r["inputs"][0]["shape"] == [None, 96, 96, 3]
    assert r["size_bytes"] > 1_000_000


@pytest.mark.parametrize("fmt,name", [("tflite", "fp32.tflite"), ("onnx", "m.onnx")])
def test_truncated_files_are_bad_input(small, tmp_path, fmt, name):
    data = (small["dir"] / name).read_bytes()
    bad = tmp_path / name
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(BadInput, match=f"cannot read .* as {fmt}"):
        analyze(bad, fmt)


def test_text_file_named_keras_is_bad_input(tmp_path):
    bad = tmp_path / "notes.keras"
    bad.write_text("this is not a model\n")
    with pytest.raises(BadInput, match="cannot read .* as keras") as info:
        analyze(bad, "keras")
    assert "\n" not in str(info.value)


def test_lambda_layer_needs_unsafe(tmp_path):
    import keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Lambda(lambda x: x * 2)(inp))
    model.save(tmp_path / "lam.keras")
    with pytest.raises(BadInput, match="--unsafe"):
        analyze(tmp_path / "lam.keras", "keras")


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(BadInput):
        analyze(tmp_path / "nope.tflite", "tflite")
    with pytest.raises(BadInput):
        analyze(tmp_path, "caffe")
