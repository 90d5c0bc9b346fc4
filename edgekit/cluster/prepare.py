"""``edgekit lab prepare`` and ``lab wheels``: a TFLite runtime on a device with no internet.

The device is asked for its Python (version, machine, C library); this machine downloads
numpy and ai-edge-litert wheels for exactly that (``pip download --platform ...
--only-binary=:all:``, which resolves their dependencies too) into a cache,
``~/.cache/edgekit/lab-wheels/cpXY-MACHINE-glibcN``; the wheels travel over SSH and are unpacked on
the device into a private folder, ``~/.edgekit/site``, by the device's own Python (a wheel is
a zip file: no pip is needed there, and nothing outside that folder changes). A small
launcher, ``~/.edgekit/bin/python``, puts the folder on the path; it is the ``python:`` of
the device in a lab file (``--remote-python`` of profile).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional

from ..core.errors import BadInput, EnvironmentProblem

PACKAGES = ("numpy", "ai-edge-litert")
_QUERY = ("import json, os, platform, sys; print(json.dumps({'version': '%d.%d' % "
          "sys.version_info[:2], 'machine': platform.machine(), 'libc': platform.libc_ver(), "
          "'executable': sys.executable, 'home': os.path.expanduser('~')}))")
_CHECK = ("import json, numpy, ai_edge_litert; from ai_edge_litert import interpreter; "
          "print(json.dumps({'numpy': numpy.__version__, 'ai_edge_litert': "
          "getattr(ai_edge_litert, '__version__', 'installed')}))")
_UNPACK = ("import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) "
           "for w in sys.argv[2:]]")


def wheel_dir(version: str, machine: str, glibc: Optional[str] = None) -> Path:
    """The cache of one target's wheels: Python version, machine and C library (an older
    glibc gets older wheels: ai-edge-litert 1.4 for glibc 2.17, 2.3 for 2.27)."""
    return Path.home() / ".cache" / "edgekit" / "lab-wheels" / (
        f"cp{version.replace('.', '')}-{machine}-glibc{glibc or '2.17'}")


def platforms(machine: str, glibc: Optional[str]) -> list[str]:
    """pip platform tags a device with ``glibc`` (e.g. "2.36") can load, newest first."""
    if machine not in ("aarch64", "x86_64", "armv7l"):
        raise BadInput(f"no wheels of ai-edge-litert for {machine} (aarch64 and x86_64 only)")
    top = int(glibc.split(".")[1]) if glibc and glibc.startswith("2.") else 17
    return [f"manylinux_2_{n}_{machine}" for n in range(top, 16, -1)] + [
        f"manylinux2014_{machine}", "any"]


def download(version: str, machine: str, glibc: Optional[str] = None,
             folder: Optional[Path] = None) -> list[Path]:
    """Wheels of numpy and ai-edge-litert (and their dependencies) for the target, in
    ``folder`` (default: the cache). The folder is replaced whole by what pip resolved now,
    so it never holds two versions of one package."""
    import shutil
    import tempfile

    folder = Path(folder or wheel_dir(version, machine, glibc))
    folder.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _pip_download(version, machine, glibc, part)
        if folder.exists():
            shutil.rmtree(folder)
        part.rename(folder)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return sorted(folder.glob("*.whl"))


def _pip_download(version: str, machine: str, glibc: Optional[str], folder: Path) -> None:
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
            "--python-version", version, "--implementation", "cp", "-d", str(folder)]
    for tag in platforms(machine, glibc):
        argv += ["--platform", tag]
    proc = subprocess.run([*argv, *PACKAGES], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise EnvironmentProblem(f"pip download for Python {version} on {machine} failed: "
                                 f"{(lines or ['(no output)'])[-1][:300]}",
                                 hint="without internet here, give --wheels DIR with the "
                                      "wheels for the device")


def prepare(runner, *, wheels: Optional[Path] = None, python: str = "python3",
            status=lambda message: None) -> dict:
    """Provision ``runner``'s device (an SSHRunner): its facts, the wheels unpacked, the
    launcher, and the versions it then imports."""
    runner._connect()
    try:
        status("asking the device for its Python")
        facts = json.loads(_run(runner, [python, "-c", _QUERY], "asking for its Python"))
        version, machine = facts["version"], facts["machine"]
        glibc = facts["libc"][1] if facts["libc"] and facts["libc"][0] == "glibc" else None
        cached = wheel_dir(version, machine, glibc)
        if wheels is not None:
            files = sorted(Path(wheels).glob("*.whl"))
            if not files:
                raise BadInput(f"--wheels {wheels}: no .whl files there")
        elif any(cached.glob("*.whl")):  # `lab wheels` or an earlier prepare fetched them
            files = sorted(cached.glob("*.whl"))
        else:
            status(f"downloading wheels for Python {version} on {machine}")
            files = download(version, machine, glibc)
        _one_version_each(files)
        home = facts["home"]
        root, site = f"{home}/.edgekit", f"{home}/.edgekit/site"
        launcher = f"{root}/bin/python"
        _run(runner, ["sh", "-c", 'rm -rf "$1.part" && mkdir -p "$1.part/wheels" "$2/bin"',
                      "sh", site, root], "making the folder")
        for i, f in enumerate(files):
            status(f"copying {f.name} ({i + 1}/{len(files)})")
            runner._ssh(["sh", "-c", 'cat > "$1"', "sh", f"{site}.part/wheels/{f.name}"],
                        stdin=f.read_bytes(), what=f"copying {f.name}")
        status("unpacking on the device")
        names = [f"{site}.part/wheels/{f.name}" for f in files]
        _run(runner, [facts["executable"], "-c", _UNPACK, f"{site}.part/lib", *names],
             "unpacking the wheels")
        script = (f'#!/bin/sh\nPYTHONPATH={shlex.quote(site)}${{PYTHONPATH:+:$PYTHONPATH}} '
                  f'exec {shlex.quote(facts["executable"])} "$@"\n')
        # the new folder replaces the old one whole; the launcher is written last
        _run(runner, ["sh", "-c", 'rm -rf "$1" && mv "$1.part/lib" "$1" && rm -rf "$1.part" '
                      '&& cat > "$2.part" && chmod 755 "$2.part" && mv "$2.part" "$2"',
                      "sh", site, launcher], "installing", stdin=script.encode())
        versions = json.loads(_run(runner, [launcher, "-c", _CHECK], "checking the runtime"))
    finally:
        runner.close()
    return {"schema": "edgekit.lab-prepare/1", "host": runner.host, "python": launcher,
            "device_python": facts["executable"], "version": version, "machine": machine,
            "glibc": glibc, "wheels": [f.name for f in files], "installed": versions}


def _one_version_each(files: list[Path]) -> None:
    """Refuse two wheels of one package: unpacked into one folder, they would mix."""
    seen: dict[str, str] = {}
    for f in files:
        name = f.name.split("-")[0].lower().replace("_", "-")
        if name in seen:
            raise BadInput(f"two wheels of {name} ({seen[name]}, {f.name}) in {f.parent}: "
                           "keep one")
        seen[name] = f.name


def _run(runner, words: list[str], what: str, stdin: Optional[bytes] = None) -> str:
    return runner._ssh(words, stdin=stdin, timeout_s=600, what=what).decode().strip()
