"""Recipe files: schema made from the commands' own options, errors that name the line."""

from __future__ import annotations

import textwrap

import pytest

from edgekit.core.errors import BadInput
from edgekit.recipes.schema import load_recipe, stage_model, stage_to_dict

GOOD = """\
schema: edgekit.recipe/1
name: demo
zoo:
  family: mobilenet_v2
  width: 0.35
  resolution: 32
  classes: 10
device: pixel7
stages:
  - stage: finetune
    data: fashion-mnist-sample:train
    epochs: 2
    augment: flip
  - stage: quantize
    mode: int8
    calib-size: 100
    calib: fashion-mnist-sample:train
  - stage: profile
    data: fashion-mnist-sample:test
gates:
  max_accuracy_drop: 0.5
"""


def write(tmp_path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_recipe_validates_and_round_trips(tmp_path):
    recipe, stages = load_recipe(write(tmp_path, GOOD))
    assert recipe.name == "demo" and recipe.zoo.family == "mobilenet_v2" and recipe.model is None
    assert [s.name for s in stages] == ["finetune", "quantize", "profile"]
    assert [s.id for s in stages] == ["finetune", "quantize", "profile"]  # default ids
    q = stages[1].options
    assert q.calib_size == 100 and q.fmt is None and q.target == "cpu"  # the CLI's defaults
    assert stage_to_dict(q) == {"stage": "quantize", "mode": "int8", "calib_size": 100,
                                "calib": "fashion-mnist-sample:train"}
    assert stage_model("quantize").model_validate(stage_to_dict(q)) == q


@pytest.mark.parametrize("old, new, line, message", [
    ("    mode: int8", "    mode: 8", 15, "stages.1.mode: Input should be a valid string"),
    ("    epochs: 2", "    epochz: 2", 12, "stages.0.epochz: Extra inputs are not permitted"),
    ("    epochs: 2", "    epochs: [2]", 12, "stages.0.epochs: Input should be a valid integer"),
    ("  - stage: profile", "  - stage: deploy", 18, "stages.2.stage: unknown stage 'deploy'"),
    ("    data: fashion-mnist-sample:test", "    output: x.tflite", 19,
     "stages.2.output: Extra inputs are not permitted"),  # the runner chains the files
    ("  max_accuracy_drop: 0.5", "  max_accuracy_drop: -1", 21, "gates.max_accuracy_drop"),
    ("name: demo\n", "", 1, "name: Field required"),
    ("device: pixel7", "model: m.keras", 1, "not both"),
    ("    epochs: 2", "    epochs: 2\n    teacher: '@nope'", 13,
     "stages.0.teacher: '@nope' names no dataset and no earlier stage"),
    ("  - stage: quantize", "  - stage: quantize\n    id: finetune", 15,
     "stages.1.id: id 'finetune' must be a new name"),
    ("  - stage: quantize", "  - stage: quantize\n    input: '@quantize'", 15,
     "stages.1.input: input '@quantize' must be '@ID' of an earlier stage"),
    ("name: demo", "name: my demo", 2, "name: String should match pattern"),
    ("  classes: 10", "  classes: [10", 8, "malformed YAML"),  # found on the next line
])
def test_mistakes_name_the_line(tmp_path, old, new, line, message):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(BadInput) as err:
        load_recipe(path)
    text = str(err.value)
    assert text.startswith(f"{path}:{line}") and message in text, text


def test_not_a_mapping_or_missing(tmp_path):
    with pytest.raises(BadInput, match="a recipe must be a YAML mapping"):
        load_recipe(write(tmp_path, "- stage: quantize\n"))
    with pytest.raises(BadInput, match="cannot read"):
        load_recipe(tmp_path / "none.yaml")
