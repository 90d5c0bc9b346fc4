"""Which wheels `lab prepare` takes for a device (no network, no device)."""

from __future__ import annotations

import pytest

from edgekit.cluster.prepare import _one_version_each, platforms, wheel_dir
from edgekit.core.errors import BadInput


def test_two_versions_of_one_package_are_refused(tmp_path):
    names = ["numpy-2.2.6-cp311-cp311-manylinux2014_x86_64.whl",
             "numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.whl"]
    with pytest.raises(BadInput, match="two wheels of numpy"):
        _one_version_each([tmp_path / n for n in names])
    _one_version_each([tmp_path / names[0], tmp_path / "ml_dtypes-0.7.0-cp311-x.whl"])


def test_platform_tags_follow_the_device_glibc():
    tags = platforms("aarch64", "2.31")
    assert tags[0] == "manylinux_2_31_aarch64" and "manylinux_2_17_aarch64" in tags
    assert "manylinux_2_32_aarch64" not in tags  # newer than the device's C library
    assert wheel_dir("3.11", "aarch64", "2.31") != wheel_dir("3.11", "aarch64", "2.36")
    with pytest.raises(BadInput, match="riscv64"):
        platforms("riscv64", "2.36")
