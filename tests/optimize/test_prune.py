"""edgekit prune: the sparsity schedule, magnitude masks, channel groups on every family, and
the command on a trained model (real training on the committed Fashion-MNIST sample)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from edgekit.optimize.prune import PolynomialSchedule, magnitude_masks

TRAIN = "fashion-mnist-sample:train"


def test_schedule_reaches_the_target_within_the_steps():
    for total in (1, 7, 30, 1000):
        s = PolynomialSchedule.for_training(0.5, total)
        values = [(t, s.at(t)) for t in range(total) if s.at(t) is not None]
        assert s.end < total and values[-1] == (s.end, 0.5)  # exactly the target, in time
        levels = [v for _, v in values]
        assert levels == sorted(levels) and (levels[0] == 0.0 or s.end == 0)
        assert all(s.at(t) is None for t in range(s.end + 1, total))


def test_magnitude_masks_zero_exactly_the_smallest():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 3, 4, 8)), 10 * rng.normal(size=(16, 5))
    for keep, k in zip(magnitude_masks([a, b], 0.25, "layer"), (a, b)):
        assert (~keep).sum() == round(0.25 * k.size)
        assert np.abs(k[~keep]).max() <= np.abs(k[keep]).min()
    keeps = magnitude_masks([a, b], 0.5, "global")
    assert sum((~m).sum() for m in keeps) == round(0.5 * (a.size + b.size))
    # one threshold over both: the small-valued kernel loses more
    assert (~keeps[0]).mean() > (~keeps[1]).mean()
    pruned = np.concatenate([np.abs(k[~m]) for k, m in zip((a, b), keeps)])
    kept = np.concatenate([np.abs(k[m]) for k, m in zip((a, b), keeps)])
    assert pruned.max() <= kept.min()


def _zoo(family):
    from edgekit.models.build import build_model
    from edgekit.models.families import get_spec

    spec = get_spec(family, width=0.5, resolution=32, classes=10)
    return build_model(spec), spec


def _applications(name):
    import keras

    kw = dict(input_shape=(32, 32, 3), weights=None, classes=10)
    return getattr(keras.applications, name)(**({"alpha": 0.35} if name == "MobileNetV2" else {}),
                                             **kw), None


@pytest.mark.parametrize("make,arg", [
    (_zoo, "mobilenet_v1"), (_zoo, "mobilenet_v2"), (_zoo, "efficientnet_b0"),
    (_applications, "MobileNetV2"), (_applications, "MobileNetV3Small"),
    (_applications, "EfficientNetB0"),
], ids=["zoo-v1", "zoo-v2", "zoo-b0", "keras-v2", "keras-v3small", "keras-b0"])
def test_thin_model_keeps_exactly_the_kept_channels(make, arg):
    """Make the channels that will be removed contribute nothing (their readers' weights set
    to zero): the thinner model must then compute exactly what the full one does. This checks
    the group analysis (squeeze-excite gates, x + 3 operations, Reshape, Rescaling) and the
    weight slicing, through the zoo builder and through the Keras config."""
    import keras

    from edgekit.optimize import channels
    from edgekit.optimize.train import classifier_parts

    model, spec = make(arg)
    model, _ = classifier_parts(model)
    groups = channels.plan(model, 0.3)
    pruned = [g for g in groups if g.keep is not None]
    assert len(pruned) >= 10
    assert any("residual" in (g.skip or "") for g in groups) or arg.endswith("v1") \
        or arg == "MobileNet"
    for g in pruned:
        assert len(g.keep) == channels.kept_count(g.channels, 0.3, 8) < g.channels
        drop = np.setdiff1d(np.arange(g.channels), g.keep)
        for name, role in g.roles.items():
            if role == "in":
                layer = model.get_layer(name)
                w = layer.get_weights()
                if isinstance(layer, keras.layers.Dense):
                    w[0][drop, :] = 0
                else:
                    w[0][:, :, drop, :] = 0
                layer.set_weights(w)
    thin, thin_spec = channels.thin_model(model, groups, spec)
    assert (thin_spec is None) == (spec is None)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(thin(x).numpy(), model(x).numpy(), atol=1e-5)
    assert thin.count_params() < 0.8 * model.count_params()


def test_prune_unstructured_command(workdir, trained_keras):
    out = workdir / "sparse.keras"
    proc = run_cli("prune", trained_keras, "--sparsity", "0.5", "--data", TRAIN, "--epochs", "2",
                   "--limit", "640", "--exclude", "stem_*", "-o", out, "--json", "--max-drop",
                   "100", check=True)
    doc = json.loads(proc.stdout)
    p = doc["pruning"]
    vs = doc["versus_start"]
    assert vs["start"] == p["val_accuracy"]["before"] and vs["result"] == p["val_accuracy"]["after"]
    assert doc["schema"] == "edgekit.prune/1" and doc["stage"]["name"] == "prune"
    assert "stem_conv" not in {r["layer"] for r in p["layers"]}
    assert p["schedule_log"][-1]["sparsity"] == 0.5 and p["schedule_log"][0]["sparsity"] == 0.0
    import keras

    model = keras.saving.load_model(out)
    for row in p["layers"]:  # the report is what the saved file holds
        k = model.get_layer(row["layer"]).kernel.numpy()
        assert int((k == 0).sum()) == row["zeros"]
        assert abs(row["sparsity"] - 0.5) <= 1 / k.size + 1e-9
    assert p["tflite_fp32"]["gzip_ratio"] < 0.8
    assert p["val_accuracy"]["images"] == 64 and len(doc["finetune"]["history"]) == 2


def test_prune_structured_command_builds_a_thinner_zoo_spec(workdir, trained_keras):
    from edgekit.evaluate.analyze import analyze
    from edgekit.models.build import build_model
    from edgekit.models.spec import spec_from_dict

    out = workdir / "thin.keras"
    args = ("prune", trained_keras, "--structured", "--ratio", "0.3", "--data", TRAIN,
            "--limit", "640", "-o", out, "--json")
    # no fine-tuning (distil next): far below the trained start, so nothing is written...
    proc = run_cli(*args, "--max-drop", "0")
    assert proc.returncode == 1 and "below the starting model" in proc.stderr
    assert "--allow-worse" in proc.stderr and not out.exists()
    proc = run_cli(*args, "--max-drop", "0", "--allow-worse", check=True)  # ...unless asked
    doc = json.loads(proc.stdout)
    assert doc["versus_start"]["allowed_worse"] and doc["versus_start"]["start_above_chance"]
    p = doc["pruning"]
    spec = spec_from_dict(doc["spec"])
    assert doc["stage"]["config"]["built_by"].startswith("zoo builder")
    assert any(b.mid_ch < b.in_ch * 6 for b in spec.blocks if b.expand)
    assert build_model(spec).count_params() == p["params"]["after"] < p["params"]["before"]
    assert p["macs"]["after"] == analyze(out, "keras")["macs"]
    assert p["macs"]["ratio"] < 0.8
    kept = [g for g in p["groups"] if "kept" in g]
    assert p["channels"]["after"] == sum(g["kept"] for g in kept)
    assert {g["criterion"] for g in kept} == {"bn"}
    assert any("residual" in g.get("skipped", "") for g in p["groups"])
    acc = p["val_accuracy"]
    assert set(acc) >= {"before", "pruned", "bn_recalibrated", "after"}


def test_prune_structured_on_a_grey_sequential_user_model(workdir):
    """A Sequential model ending in a Softmax layer, one input channel, no sidecar: the
    middle conv loses half its filters, the next conv reads only the kept ones."""
    import keras

    src = workdir / "grey_seq.keras"
    L = keras.layers
    keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(16, 3, name="c1"),
                      L.BatchNormalization(name="bn1"), L.ReLU(), L.Conv2D(16, 3, name="c2"),
                      L.BatchNormalization(name="bn2"), L.ReLU(), L.GlobalAveragePooling2D(),
                      L.Dense(10), L.Softmax()]).save(src)
    out = workdir / "grey_seq_thin.keras"
    proc = run_cli("prune", src, "--structured", "--ratio", "0.5", "--round-to", "1",
                   "--data", TRAIN, "--limit", "200", "--preprocessing", "unit", "-o", out,
                   "--json", check=True)
    doc = json.loads(proc.stdout)
    assert doc["stage"]["config"]["built_by"] == "Keras config" and doc["input"]["shape"][-1] == 1
    thin = keras.saving.load_model(out)
    assert thin.get_layer("c1").filters == 8 and thin.get_layer("c2").kernel.shape[2] == 8
    assert doc["pruning"]["params"]["after"] == thin.count_params()


@pytest.mark.parametrize("args,message", [
    (["--structured", "--sparsity", "0.5"], "--structured takes --ratio"),
    (["--sparsity", "0.5", "--batch-size", "0"], "--batch-size, --lr and --patience > 0"),
    (["--sparsity", "0.5", "-o", "x.tflite"], "the output must be a .keras file"),
    (["--sparsity", "1.5"], "--sparsity must be between 0 and 1"),
    (["--structured", "--ratio", "0.3", "--criterion", "taylor"], "unknown --criterion"),
    (["--sparsity", "0.5", "--exclude", "nosuch*"], "matches no layer"),
])
def test_prune_bad_input_exits_2_and_writes_nothing(workdir, trained_keras, args, message):
    out = workdir / "never.keras"
    args = args if "-o" in args else [*args, "-o", out]
    proc = run_cli("prune", trained_keras, "--data", TRAIN, "--limit", "100", *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
