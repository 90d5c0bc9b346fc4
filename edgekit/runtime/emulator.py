"""EmulatorRunner: the harness inside the cached Arm64 Debian user-space, run by qemu.

For accuracy and fidelity on Arm64 kernels (XNNPACK's Arm code paths round int8 differently
from x86), not for speed: user-mode emulation is 90-330x slower than a device, so the profile
document marks its latency as not meaningful and ``compare`` never gates on it.

Only the model, the harness, the job and the inputs are copied into the user-space (a private
folder under its /tmp); /proc and /sys are not mounted (the interpreter crashes under qemu when
both are), so the harness reports no CPU name or cache size there.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from . import qemu as emulator
from .base import harness_path
from .local import LocalRunner

NOTE = ("qemu user-mode emulation of Arm64 on this machine: 90-330x slower than a device; "
        "not a device figure")


class EmulatorRunner(LocalRunner):
    name = "emulator"
    latency_meaningful = False
    latency_note = NOTE

    def __init__(self, timeout_s: float = 3 * 3600.0):
        super().__init__(timeout_s)
        self.root = emulator.require_ready()
        self.qemu = f"/usr/bin/{emulator.QEMU}"

    def _new_workdir(self) -> Path:
        (self.root / "tmp").mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="edgekit-run-", dir=self.root / "tmp"))

    def _inside(self, path: Path) -> str:
        return "/" + str(Path(path).relative_to(self.root))

    def _stage_model(self, path: Path) -> Path:
        assert self.workdir is not None
        return Path(shutil.copy2(path, self.workdir / ("model" + Path(path).suffix)))

    def _argv(self, job_path: Path) -> list[str]:
        harness = job_path.with_name("harness.py")
        if not harness.exists():
            shutil.copy2(harness_path(), harness)
        return ["chroot", str(self.root), self.qemu, "/usr/bin/python3", self._inside(harness),
                self._inside(job_path)]
