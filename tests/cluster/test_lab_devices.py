"""The devices a lab node declares (``edgekit lab start``): a lab file's adb devices that adb
sees online, none that is offline or gone, and a line for each attached phone the lab file
does not name (its catalog device is unknown). ``adb`` is tests/adb_standin.py."""

from __future__ import annotations

import adb_standin


def test_online_adb_devices_are_declared_and_the_unlisted_named(tmp_path, monkeypatch):
    from edgekit.cluster.lab import resources
    from edgekit.cluster.nodes import declared

    env = adb_standin.install(tmp_path)
    env["ADB_STANDIN_DEVICES"] = "PIX-A:device,PIX-B:offline,STRAY-1:device,STRAY-2:unauthorized"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    lab = tmp_path / "lab.yaml"
    lab.write_text("schema: edgekit.lab/1\ndevices:\n"
                   "  - {name: phone-a, device: pixel7, serial: PIX-A}\n"
                   "  - {name: phone-b, device: pixel7, serial: PIX-B}\n"
                   "  - {name: phone-c, device: galaxy-s23, serial: PIX-C}\n")
    devices, skipped = declared(lab, host_device=True)
    assert [d.name for d in devices] == ["host", "phone-a"]
    assert resources(devices) == {"device:host": 1, "device:pixel7": 1}
    assert len(skipped) == 4, skipped
    assert "device phone-b (pixel7) failed its health check" in skipped[0]
    assert "offline" in skipped[0]
    assert "phone-c (galaxy-s23)" in skipped[1] and "not found" in skipped[1]
    assert "adb device STRAY-1 (device) is attached but not in the lab file" in skipped[2]
    assert "STRAY-2 (unauthorized)" in skipped[3]


def test_without_adb_only_the_lab_file_counts(tmp_path, monkeypatch):
    from edgekit.cluster.nodes import attached_adb_devices, declared

    monkeypatch.setenv("PATH", str(tmp_path))  # no adb on it
    assert attached_adb_devices() == {}
    devices, skipped = declared(None, host_device=True)
    assert [d.name for d in devices] == ["host"] and skipped == []
