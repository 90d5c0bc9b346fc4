"""``edgekit emulator setup | status | remove``: an Arm64 Debian user-space run by qemu.

What it builds (the recipe verified on the project machine):

1. ``debootstrap --arch=arm64 --foreign --variant=minbase --include=python3 bookworm`` from the
   Debian mirror this machine's apt sources name (or ``--mirror``); the first stage only
   downloads and unpacks, so no binfmt registration is needed;
2. every downloaded package is unpacked with ``dpkg-deb -x`` (what the second stage would do,
   minus maintainer scripts, which would need an emulated shell);
3. ``qemu-aarch64-static`` is copied in, so ``chroot ROOT /usr/bin/qemu-aarch64-static
   /usr/bin/python3`` runs Arm64 Python;
4. the aarch64 wheels of ai-edge-litert (the host's version, so both sides run the same
   runtime) and its dependencies are fetched by pip for manylinux aarch64 (glibc <= 2.36),
   CPython 3.11
   and unpacked into ``/usr/local/lib/python3.11/dist-packages``.

The tree is built in a temporary folder beside the cache and renamed into place only once a
smoke test (importing the interpreter under qemu) passes, so an interrupted setup leaves
nothing half-built. Cache: ``$EDGEKIT_CACHE/emulator/arm64`` (default
``~/.cache/edgekit/emulator/arm64``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

from ..core.errors import BadInput, EnvironmentProblem

SUITE = "bookworm"  # Debian 12: Python 3.11, like the wheels fetched for it
PY = "3.11"
# pip does not expand a manylinux_2_N tag to older ones by itself: list every glibc up to
# bookworm's 2.36
PLATFORMS = (*(f"manylinux_2_{v}_aarch64" for v in range(36, 16, -1)), "manylinux2014_aarch64")
QEMU = "qemu-aarch64-static"
MARKER = "edgekit-emulator.json"


def cache_root() -> Path:
    base = os.environ.get("EDGEKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgekit")
    return Path(base) / "emulator"


def rootfs() -> Path:
    return cache_root() / "arm64"


def status() -> dict:
    """What is cached: ready or not, and the facts recorded at setup."""
    root = rootfs()
    marker = root / MARKER
    if not marker.is_file():
        return {"ready": False, "path": str(root)}
    return {"ready": True, "path": str(root), **json.loads(marker.read_text())}


def require_ready() -> Path:
    if not status()["ready"]:
        raise EnvironmentProblem("the Arm64 emulator is not set up",
                                 hint="run `edgekit emulator setup` (needs root, "
                                      "qemu-user-static and debootstrap)")
    check_can_run()
    return rootfs()


def check_can_run() -> str:
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise EnvironmentProblem(f"{QEMU} is not installed",
                                 hint="apt-get install qemu-user-static")
    if os.geteuid() != 0:
        raise EnvironmentProblem("the Arm64 emulator runs in a chroot, which needs root",
                                 hint="run as root (e.g. in CI) or with sudo")
    return qemu


def debian_mirror() -> str:
    """The first Debian mirror named by this machine's apt sources."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and words[1].rstrip("/").endswith(
                    "/debian"):
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2:
                uri = next((w for w in words[1:] if w.startswith("http")), "")
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    return "http://deb.debian.org/debian"


def _run(argv: list[str], what: str, timeout: float = 1800, **kw) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"{what} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise EnvironmentProblem(f"{what} failed: {last[0][:300]}")
    return proc.stdout


def _install_wheel(wheel: Path, site: Path) -> None:
    """Unpack a wheel as pip would for a plain (non-editable) install: the package folders go
    to site-packages, ``*.data/purelib|platlib`` are merged in, scripts are not needed."""
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    for data in site.glob("*.data"):
        for sub in ("purelib", "platlib"):
            if (data / sub).is_dir():
                shutil.copytree(data / sub, site, dirs_exist_ok=True)
        shutil.rmtree(data)


def setup(mirror: str | None = None, force: bool = False,
          step: Callable[[str], None] = lambda msg: None) -> dict:
    """Build (or keep) the cached Arm64 user-space; returns ``status()``."""
    if status()["ready"] and not force:
        return {**status(), "cached": True}
    qemu = check_can_run()
    if shutil.which("debootstrap") is None:
        raise EnvironmentProblem("debootstrap is not installed", hint="apt-get install debootstrap")
    mirror = mirror or debian_mirror()
    if not mirror.startswith(("http://", "https://", "file:/")):
        raise BadInput(f"--mirror {mirror!r} is not an http(s) or file URL")
    t0 = time.time()
    cache_root().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="arm64-building-", dir=cache_root()))
    try:
        root = work / "root"
        step(f"debootstrap {SUITE} arm64 from {mirror}")
        _run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
              "--include=python3", SUITE, str(root), mirror], "debootstrap")
        debs = sorted((root / "var/cache/apt/archives").glob("*.deb"))
        step(f"unpacking {len(debs)} packages")
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}", timeout=300)
        shutil.copy2(qemu, root / "usr/bin" / QEMU)
        wheels = work / "wheels"
        req = _litert_requirement()
        step(f"fetching aarch64 wheels ({req})")
        platforms = [w for p in PLATFORMS for w in ("--platform", p)]
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
              *platforms, "--python-version", PY, "--implementation", "cp", "-d", str(wheels),
              req], "pip download of the aarch64 wheels")
        site = root / f"usr/local/lib/python{PY}/dist-packages"
        site.mkdir(parents=True, exist_ok=True)
        for w in sorted(wheels.glob("*.whl")):
            _install_wheel(w, site)
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        step("smoke test under qemu")
        probe = ("import platform, numpy, ai_edge_litert, importlib.metadata as m; "
                 "print(platform.machine(), numpy.__version__, m.version('ai-edge-litert'))")
        out = _run(["chroot", str(root), f"/usr/bin/{QEMU}", "/usr/bin/python3", "-c", probe],
                   "the emulated Python smoke test", timeout=600).split()
        if not out or out[0] != "aarch64":
            raise EnvironmentProblem(f"the emulated Python reported {out!r}, not aarch64")
        facts = {"suite": SUITE, "mirror": mirror, "machine": out[0], "numpy": out[1],
                 "ai_edge_litert": out[2], "wheels": sorted(w.name for w in wheels.glob("*.whl")),
                 "setup_s": round(time.time() - t0, 1), "size_mb": round(_size(root) / 1e6),
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (root / MARKER).write_text(json.dumps(facts, indent=1))
        remove()
        os.replace(root, rootfs())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {**status(), "cached": False}


def remove() -> bool:
    """Delete the cached user-space; True if there was one."""
    root = rootfs()
    if not root.exists():
        return False
    shutil.rmtree(root)
    return True


def _litert_requirement() -> str:
    try:
        from importlib import metadata
        return f"ai-edge-litert=={metadata.version('ai-edge-litert')}"
    except Exception:
        return "ai-edge-litert"


def _size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
