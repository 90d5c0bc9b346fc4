"""The model zoo, generated from the FAMILIES registry: every family is built and checked."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest

from edgekit.core.errors import BadInput
from edgekit.models.families import family_names, get_spec
from edgekit.models.spec import (ArchSpec, BlockSpec, make_divisible, scale, scale_repeats,
                                 spec_from_dict, spec_to_dict)
from edgekit.core.registry import FAMILIES

keras = pytest.importorskip("keras")
from edgekit.models.build import build_model  # noqa: E402

FAMILY_NAMES = sorted(FAMILIES)
SMALL = dict(width=0.5, resolution=64, classes=10)
CHEAP = [n for n in FAMILY_NAMES if FAMILIES[n].caps["width"] * FAMILIES[n].caps["depth"] < 2]


def _params(model) -> int:
    return int(model.count_params())


def _same_weights(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


# --- registry and spec level (no keras) --------------------------------------------------

def test_registry_lists_every_family_with_caps():
    assert family_names() == list(FAMILIES)
    assert len(FAMILY_NAMES) == 17
    for name in FAMILY_NAMES:
        caps = FAMILIES[name].caps
        assert {"kind", "width", "depth", "resolution", "dropout", "scales"} <= set(caps)


def test_spec_modules_import_without_keras():
    code = ("import sys, edgekit.models.families, edgekit.models.spec, edgekit.core.registry;"
            "assert not {'keras', 'tensorflow'} & set(sys.modules), 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("value, expected", [
    (32, 32), (16, 16), (38.4, 40), (11.2, 16), (8.4, 8), (3, 8), (5.6, 8), (35.2, 32),
    (44.8, 48), (57.6, 56), (1280 * 1.1, 1408), (1280 * 1.2, 1536), (960 * 0.75, 720)])
def test_make_divisible(value, expected):
    assert make_divisible(value) == expected
    assert expected % 8 == 0 and expected >= 0.9 * value


def test_make_divisible_never_loses_more_than_ten_percent():
    for v in np.arange(1, 400, 0.37):
        r = make_divisible(v)
        assert r % 8 == 0 and r >= 0.9 * v and r >= 8


def test_scale_repeats_rounds_up():
    assert scale_repeats([3], 1.4) == [5]  # ceil(4.2)
    assert scale_repeats([1], 3.1) == [4]
    assert scale_repeats([4], 1.0) == [4]
    assert scale_repeats([2], 0.5) == [1]
    assert scale_repeats([1, 1, 2], 2.0) == [2, 2, 4]
    assert min(scale_repeats([1, 1, 2], 0.25)) == 1  # every row keeps a block


# Reference numbers: keras.applications / tensorflow/tpu builders (stem, head, block count).
EFFICIENTNET_SHAPES = {
    "efficientnet_b0": (32, 1280, 16), "efficientnet_b1": (32, 1280, 23),
    "efficientnet_b2": (32, 1408, 23), "efficientnet_b3": (40, 1536, 26),
    "efficientnet_b4": (48, 1792, 32), "efficientnet_b5": (48, 2048, 39),
    "efficientnet_b6": (56, 2304, 45), "efficientnet_b7": (64, 2560, 55),
    "efficientnet_lite0": (32, 1280, 16), "efficientnet_lite1": (32, 1280, 21),
    "efficientnet_lite2": (32, 1280, 21), "efficientnet_lite3": (32, 1280, 24),
    "efficientnet_lite4": (32, 1280, 30),
}


@pytest.mark.parametrize("name", sorted(EFFICIENTNET_SHAPES))
def test_compound_scaling_matches_reference(name):
    spec = get_spec(name)
    stem, head, n_blocks = EFFICIENTNET_SHAPES[name]
    assert (spec.stem.out_ch, spec.head.out_ch, len(spec.blocks)) == (stem, head, n_blocks)
    caps = FAMILIES[name].caps
    assert (spec.width, spec.depth, spec.resolution) == (caps["width"], caps["depth"],
                                                         caps["resolution"])
    assert spec.input_shape == (caps["resolution"],) * 2 + (3,)
    lite = "lite" in name
    assert all((b.se_ch == 0) == lite for b in spec.blocks)
    assert all(b.act == ("relu6" if lite else "swish") for b in spec.blocks)
    if lite:  # first and last stage are not depth-scaled
        assert sum(b.name.startswith("block1") for b in spec.blocks) == 1
        assert sum(b.name.startswith("block7") for b in spec.blocks) == 1


def test_b3_block_channels():
    spec = get_spec("efficientnet_b3")
    first = spec.blocks[0]
    assert (first.in_ch, first.out_ch, first.se_ch, first.expand) == (40, 24, 10, False)
    last = spec.blocks[-1]
    assert (last.name, last.in_ch, last.mid_ch, last.out_ch, last.se_ch) == (
        "block7b_", 384, 2304, 384, 96)
    assert last.drop_path == pytest.approx(0.2 * 25 / 26, abs=1e-6)


def test_preprocessing_is_recorded():
    for name in FAMILY_NAMES:
        pre = get_spec(name).preprocessing
        assert pre["channel_order"] == "RGB" and len(pre["mean"]) == len(pre["std"]) == 3
    assert get_spec("mobilenet_v2").preprocessing["mean"] == [127.5] * 3
    assert get_spec("efficientnet_b0").preprocessing["std"] == pytest.approx(
        [0.229 * 255, 0.224 * 255, 0.225 * 255])
    assert get_spec("efficientnet_lite0").preprocessing["std"] == [128.0] * 3


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_spec_json_round_trip(name):
    spec = get_spec(name, **SMALL)
    d = json.loads(json.dumps(spec_to_dict(spec)))
    assert d["input_shape"] == [64, 64, 3]
    assert spec_from_dict(d) == spec


def test_scale_is_pure_and_relative():
    b0 = get_spec("efficientnet_b0")
    before = spec_to_dict(b0)
    b3 = scale(b0, 1.2, 1.4, 300)
    assert spec_to_dict(b0) == before
    ref = get_spec("efficientnet_b3")
    assert (b3.stem, b3.blocks, b3.head, b3.resolution) == (ref.stem, ref.blocks, ref.head, 300)
    assert scale(b0) == b0
    assert scale(scale(b0, 2.0), 0.5) == b0  # recomputed from the template, no compounding
    with pytest.raises(FrozenInstanceError):
        b0.width = 2.0  # type: ignore[misc]


def test_mobilenet_depth_scaling_works():
    base = len(get_spec("mobilenet_v2").blocks)
    assert len(get_spec("mobilenet_v2", depth=1.5).blocks) > base
    assert len(get_spec("mobilenet_v2", depth=0.5).blocks) < base
    assert len(get_spec("mobilenet_v3_large", depth=2.0).blocks) == 30


def test_pruned_spec_cannot_be_rescaled():
    spec = get_spec("mobilenet_v2", **SMALL)
    b = spec.blocks[3]
    pruned = replace(spec, blocks=spec.blocks[:3] + (replace(b, mid_ch=b.mid_ch - 8),)
                     + spec.blocks[4:])
    with pytest.raises(BadInput):
        scale(pruned, width=2.0)


@pytest.mark.parametrize("kwargs", [
    dict(width=0), dict(width=-1.0), dict(depth=0), dict(resolution=31), dict(resolution=1025),
    dict(resolution=224.5), dict(classes=1), dict(dropout=1.0)])
def test_bad_values_raise_bad_input(kwargs):
    with pytest.raises(BadInput) as err:
        get_spec("mobilenet_v2", **kwargs)
    assert "\n" not in str(err.value)


def test_unknown_family_raises_bad_input():
    with pytest.raises(BadInput, match="unknown model family 'resnet50'"):
        get_spec("resnet50")


def test_broken_spec_raises_bad_input():
    spec = get_spec("mobilenet_v1", **SMALL)
    broken = replace(spec, blocks=(replace(spec.blocks[0], in_ch=7),) + spec.blocks[1:])
    with pytest.raises(BadInput, match="receives"):
        build_model(broken)
    with pytest.raises(BadInput, match="schema"):
        spec_from_dict({"name": "x"})


# --- built models ------------------------------------------------------------------------

def _check_model(spec: ArchSpec) -> None:
    a, b = build_model(spec, seed=1), build_model(spec, seed=1)
    assert a.output_shape == (None, spec.classes)
    assert a.get_layer("logits").output.shape == (None, spec.classes)
    assert a.get_layer("predictions").get_config()["activation"] == "softmax"
    names = [layer.name for layer in a.layers]
    assert names == [layer.name for layer in b.layers] and len(set(names)) == len(names)
    assert _same_weights(a, b)
    assert not any(type(layer).__name__ in ("Rescaling", "Normalization") for layer in a.layers)
    x = np.zeros((1,) + spec.input_shape, np.float32)
    assert np.asarray(a(x)).sum() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_builds_small(name):
    _check_model(get_spec(name, **SMALL))


@pytest.mark.parametrize("name", CHEAP)
def test_family_builds_at_default_scale(name):
    spec = get_spec(name)
    model = build_model(spec)
    assert model.input_shape == (None,) + spec.input_shape
    assert model.output_shape == (None, 1000)


def test_seed_changes_weights():
    spec = get_spec("mobilenet_v3_small", **SMALL)
    assert not _same_weights(build_model(spec, seed=1), build_model(spec, seed=2))


def test_pruned_and_fused_specs_build():
    spec = get_spec("efficientnet_b0", **SMALL)
    b = spec.blocks[2]
    pruned = replace(spec, blocks=spec.blocks[:2] + (replace(b, mid_ch=50, se_ch=3),)
                     + spec.blocks[3:])
    model = build_model(pruned)
    assert model.get_layer("block2b_expand_conv").output.shape[-1] == 50
    assert model.get_layer("block2b_se_reduce").output.shape[-1] == 3
    fused = (BlockSpec("block1a_", "fused", 16, 64, 24, 3, 2, True, 4, "swish"),
             BlockSpec("block1b_", "fused", 24, 24, 24, 3, 1, False, 0, "swish", True, 0.1))
    stem = replace(spec.stem, out_ch=16)
    head = replace(spec.head, in_ch=24, mid_ch=24)
    model = build_model(replace(spec, stem=stem, blocks=fused, head=head))
    assert model.get_layer("block1b_add") is not None


# --- parity with keras.applications (weights=None) ---------------------------------------

# keras EfficientNet carries a Normalization layer with 7 weights (mean, variance, count).
KERAS_NORMALIZATION = 7

PARITY = [
    ("mobilenet_v2", dict(width=0.35, resolution=96, classes=10),
     lambda A: A.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), classes=10, weights=None),
     423_018),
    ("mobilenet_v2", {}, lambda A: A.MobileNetV2(weights=None), 3_538_984),
    ("mobilenet_v3_large", {}, lambda A: A.MobileNetV3Large(weights=None), 5_507_432),
    ("mobilenet_v3_small", {}, lambda A: A.MobileNetV3Small(weights=None), None),
    ("mobilenet_v1", {}, lambda A: A.MobileNet(weights=None), None),
    ("efficientnet_b0", {}, lambda A: A.EfficientNetB0(weights=None), 5_330_564),
    ("efficientnet_b1", {}, lambda A: A.EfficientNetB1(weights=None), None),
]


@pytest.mark.parametrize("name, kwargs, make, expected", PARITY,
                         ids=[f"{p[0]}-{i}" for i, p in enumerate(PARITY)])
def test_param_count_matches_keras_applications(name, kwargs, make, expected):
    ours = _params(build_model(get_spec(name, **kwargs)))
    reference = make(keras.applications)
    extra = KERAS_NORMALIZATION if name.startswith("efficientnet") else 0
    assert ours == _params(reference) - extra
    if expected is not None:
        assert ours == expected
    if name.startswith("efficientnet"):  # same layer names, same weight shapes
        mine = build_model(get_spec(name, **kwargs))
        for layer in reference.layers:
            if layer.weights and type(layer).__name__ != "Normalization":
                ours_name = "logits" if layer.name == "predictions" else layer.name
                shapes = [tuple(w.shape) for w in mine.get_layer(ours_name).weights]
                assert shapes == [tuple(w.shape) for w in layer.weights], layer.name


def test_lite0_parameter_count():
    model = build_model(get_spec("efficientnet_lite0"))
    trainable = sum(int(math.prod(w.shape)) for w in model.trainable_weights)
    assert _params(model) == 4_694_024  # incl. BN moving statistics
    assert trainable == 4_652_008  # the published "4.65M" (trainable)


def test_same_shaped_layers_start_with_different_weights():
    import numpy as np

    from edgekit.models.build import build_model
    from edgekit.models.families import get_spec

    model = build_model(get_spec("mobilenet_v2", width=0.35, resolution=32, classes=10), seed=0)
    a = model.get_layer("block3b_expand_conv").get_weights()[0]
    b = model.get_layer("block3c_expand_conv").get_weights()[0]
    assert a.shape == b.shape and not np.array_equal(a, b)
