"""The device catalog: every packaged profile validates, every number has a provenance, and
loading errors are one clear line. Generated from the catalog itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from edgekit.core.devices import (CATALOG_DIR, DeviceProfile, known_names, list_devices, load_device,
                             load_profile_file)
from edgekit.core.errors import BadInput

FILES = sorted(CATALOG_DIR.glob("*.yaml"))
REQUIRED = {"pixel7", "pixel8", "galaxy-s23", "raspberry-pi-4", "raspberry-pi-5",
            "jetson-orin-nano", "jetson-xavier-nx", "host"}


@pytest.fixture(autouse=True)
def _empty_home(tmp_path, monkeypatch):
    """Never read the developer's own overrides."""
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))


def test_catalog_has_the_required_devices():
    assert REQUIRED <= {p.stem for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_profile_validates_with_provenance(path):
    prof = load_profile_file(path)
    assert prof.name == path.stem
    numbers = list(prof.numbers())
    assert numbers, "a profile without numbers"
    for where, num in numbers:
        prov = num.prov
        assert prov.kind in ("published", "measured", "estimated"), where
        if prov.kind == "published":
            assert prov.source and prov.source.strip(), where
        elif prov.kind == "measured":
            assert prov.date and prov.command, where
        else:
            assert prov.how and prov.how.strip(), where
    b = prof.default_budget
    for f in ("latency_ms", "memory_mb", "size_mb", "threads"):
        assert getattr(b, f).value > 0
    assert b.runtime in prof.runtimes
    for key, entry in prof.cost_model.items():
        assert key.split("/")[0] in prof.runtimes and entry.coefficients
    counts = prof.provenance_counts()
    assert sum(counts.values()) == len(numbers)
    if prof.kind not in ("host", "emulator"):  # neither is a product with a spec sheet
        assert counts["published"] > 0, "hardware facts should come from a spec sheet"
    # nothing in the packaged catalog pretends to be measured
    assert counts["measured"] == 0


@pytest.mark.parametrize("name", ["pixel7", "pixel8", "galaxy-s23"])
def test_phones_are_anchored_on_published_figures(name):
    prof = load_device(name)
    assert prof.anchors
    for a in prof.anchors:
        assert a.latency_ms.prov.kind == "published"
        assert a.measured_on in ("Pixel 1", "Pixel 3", "Pixel 4")
        assert a.scale_to_device is not None and a.scale_to_device.prov.kind == "estimated"
    # the Pixel 1 MobileNetV2 figure of the slim README is carried exactly
    assert any(a.measured_on == "Pixel 1" and a.latency_ms.value == 73.8 for a in prof.anchors)


def test_unknown_device_lists_known_names():
    with pytest.raises(BadInput) as exc:
        load_device("pixel99")
    assert "pixel7" in str(exc.value) and "raspberry-pi-4" in str(exc.value)
    proc = run_cli("devices", "show", "pixel99")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and "jetson-orin-nano" in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) <= 3


def _user_file(tmp_path, name: str, text: str) -> Path:
    folder = tmp_path / "home" / "devices"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def _catalog_text(name: str) -> str:
    return (CATALOG_DIR / f"{name}.yaml").read_text()


BAD = {
    "malformed": ("name: host\ncpu: [unclosed\n", "malformed YAML"),
    "unknown field": (_catalog_text("host") + "turbo_mode: true\n", "turbo_mode"),
    "bad provenance kind": (_catalog_text("host").replace("kind: estimated", "kind: guessed", 1),
                            "kind"),
    "published without source": (
        _catalog_text("raspberry-pi-4").replace("spec: {kind: published, source:",
                                                "spec: {kind: published, how:", 1),
        "published provenance needs source"),
    "number without provenance": (
        _catalog_text("raspberry-pi-4").replace("cpu:\n  provenance: spec\n", "cpu:\n", 1),
        "has no provenance"),
    "not a mapping": ("- just\n- a list\n", "mapping"),
}


@pytest.mark.parametrize("label", list(BAD))
def test_bad_user_profile_is_one_line_bad_input(tmp_path, label):
    text, needle = BAD[label]
    name = "raspberry-pi-4" if "raspberry-pi-4" in text else "host"
    path = _user_file(tmp_path, name, text)
    with pytest.raises(BadInput) as exc:
        load_device(name)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and needle in msg, msg


def test_bad_profile_through_the_cli(tmp_path):
    _user_file(tmp_path, "host", _catalog_text("host") + "turbo_mode: true\n")
    proc = run_cli("devices", "list", env={"EDGEKIT_HOME": str(tmp_path / "home")})
    assert proc.returncode == 2 and "turbo_mode" in proc.stderr and "Traceback" not in proc.stderr


def test_user_override_takes_precedence(tmp_path):
    text = _catalog_text("host").replace("display_name: This machine (uncalibrated)",
                                         "display_name: Calibrated host")
    text = text.replace("kind: estimated, how: 'development-machine figure",
                        "kind: measured, date: 2026-11-30, command: edgekit calibrate, how: 'development-machine figure")
    path = _user_file(tmp_path, "host", text)
    prof = load_device("host")
    assert prof.display_name == "Calibrated host" and prof.origin == "user"
    assert Path(prof.path) == path
    assert prof.provenance_counts()["measured"] > 0
    # a user-only device joins the catalog
    _user_file(tmp_path, "my-board", _catalog_text("raspberry-pi-5").replace(
        "name: raspberry-pi-5", "name: my-board"))
    assert "my-board" in known_names() and len(list_devices()) == len(FILES) + 1


def test_measured_needs_date_and_command(tmp_path):
    text = _catalog_text("host").replace("kind: estimated, how: 'development-machine figure",
                                         "kind: measured, how: 'development-machine figure", 1)
    _user_file(tmp_path, "host", text)
    with pytest.raises(BadInput, match="measured provenance needs date and command"):
        load_device("host")


def test_cli_list_and_show_json(tmp_path):
    env = {"EDGEKIT_HOME": str(tmp_path / "home")}
    doc = json.loads(run_cli("devices", "list", "--json", check=True, env=env).stdout)
    assert doc["schema"] == "edgekit.devices/1"
    assert {d["name"] for d in doc["devices"]} >= REQUIRED
    pi4 = next(d for d in doc["devices"] if d["name"] == "raspberry-pi-4")
    assert pi4["cores"] == 4 and "dotprod" not in pi4["isa"]
    show = json.loads(run_cli("devices", "show", "pixel7", "--json", check=True, env=env).stdout)
    assert show["schema"] == "edgekit.device/1" and show["origin"] == "catalog"
    counts = show["provenance_counts"]
    assert counts["estimated"] > 0 and counts["published"] > 0
    assert sum(counts.values()) == len(show["numbers"])
    assert DeviceProfile.model_validate(show["profile"]).name == "pixel7"  # round-trips
    human = run_cli("devices", "show", "pixel7", check=True, env=env)
    assert human.stdout == "" and "estimated" in human.stderr and "published" in human.stderr


def test_devices_list_does_not_import_tensorflow():
    from conftest import modules_after

    _, loaded = modules_after(["devices", "list", "--json"], ("tensorflow", "keras", "onnxruntime"))
    assert loaded == []
