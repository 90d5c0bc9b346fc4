"""Reading the input range from a graph (edgekit.core.preprocessing) and dynamic input sizes
(edgekit.core.shapes), on small graphs made here: each reading must be able to say "unknown"."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.core.errors import BadInput
from edgekit.core.preprocessing import from_keras, from_onnx, resolve
from edgekit.core.shapes import concrete, parse_input_size


def _onnx(ops, shape=(None, 3, None, None)):
    """A graph: the listed (op, constant) steps on the input, then a 1x1 convolution."""
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes, x = [], [], "image"
    for i, (op, value) in enumerate(ops):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), f"c{i}"))
        nodes.append(helper.make_node(op, [x, f"c{i}"], [f"t{i}"]))
        x = f"t{i}"
    inits.append(numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w"))
    nodes.append(helper.make_node("Conv", [x, "w"], ["y"]))
    dims = [d if d else n for d, n in zip(shape, ("n", "c", "h", "w"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", 1, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


@pytest.mark.parametrize("ops,name", [
    ([("Div", 255.0), ("Sub", MEAN), ("Div", STD)], "raw"),  # PyTorch with x / 255 inside
    ([("Sub", MEAN), ("Div", STD)], "unit"),  # normalisation of 0..1 input inside
    ([("Mul", 1 / 127.5), ("Sub", 1.0)], "raw"),  # [-1, 1] from raw pixels
    ([], None),  # nothing on the input: unknown
    ([("Mul", 1000.0)], None),  # a scaling no pixel range explains: unknown
])
def test_onnx_leading_arithmetic(ops, name):
    prep, why = from_onnx(_onnx(ops))
    assert (prep or {}).get("name") == name, why
    if name is None:
        assert why


def test_keras_layers_and_layouts():
    import keras

    def model(*pre, base=None):
        inputs = keras.Input((16, 16, 3))
        x = inputs
        for layer in pre:
            x = layer(x)
        x = keras.layers.Conv2D(4, 3, name="conv_a")(x)
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))

    raw, _ = from_keras(model(keras.layers.Rescaling(1 / 255),
                              keras.layers.Normalization(mean=[0.5] * 3, variance=[0.06] * 3)))
    assert raw["name"] == "raw" and "Rescaling 1/255, Normalization" in raw["decided_by"]
    unit, _ = from_keras(model(keras.layers.Normalization(mean=[0.5] * 3, variance=[0.06] * 3)))
    assert unit["name"] == "unit"
    none, why = from_keras(model())
    assert none is None and "keras.applications" in why
    v2 = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3),
                                        alpha=0.35)
    tf_, _ = from_keras(v2)
    assert tf_["name"] == "tf" and "MobileNetV2" in tf_["decided_by"]


def test_resolve_order_and_unknown(tmp_path):
    from edgekit.core.artifacts import Artifact

    art = Artifact(tmp_path / "m.tflite", "tflite", {})
    assert resolve(art) is None
    with pytest.raises(BadInput, match="--preprocessing tf"):
        resolve(art, needed_for="profiling")
    assert resolve(art, "torch")["decided_by"] == "--preprocessing torch"
    art.meta["preprocessing"] = {"mean": [0] * 3, "std": [1] * 3, "name": "raw"}
    assert resolve(art)["decided_by"] == "sidecar"
    assert resolve(art, "tf")["name"] == "tf"  # the flag wins over the sidecar


@pytest.mark.parametrize("text,hw", [("320", (320, 320)), ("320x256", (320, 256)),
                                     ("1x3x224x200", (224, 200)), ("1x224x200x3", (224, 200))])
def test_parse_input_size(text, hw):
    assert parse_input_size(text) == hw


@pytest.mark.parametrize("text", ["0", "x", "1x2x3", "-5", "9000"])
def test_parse_input_size_refuses(text):
    with pytest.raises(BadInput):
        parse_input_size(text)


def test_concrete_shapes():
    assert concrete([None, 3, None, None], (64, 48), "m") == [1, 3, 64, 48]
    assert concrete(["batch", None, None, 3], (64, 48), "m") == [1, 64, 48, 3]
    assert concrete([None, 32, 32, 3], None, "m") == [1, 32, 32, 3]
    with pytest.raises(BadInput, match="--input-size"):
        concrete([None, 3, None, None], None, "m")
    with pytest.raises(BadInput, match="contradicts"):
        concrete([None, 32, 32, 3], (64, 64), "m")
