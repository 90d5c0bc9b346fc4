"""A stand-in for `adb` and for the phone's `benchmark_model`, for the adb runner's tests.

No phone, Android emulator or benchmark_model binary exists here, so this plays both:

* ``adb [-s SERIAL] get-state | push SRC DST | pull SRC DST | shell CMD`` on a folder that
  stands for the phone's file system ($ADB_STANDIN_ROOT; /data/local/tmp is mapped into it),
  running shell commands with the real /bin/sh. ``taskset MASK`` is recorded and dropped (this
  machine has 2 cores, a phone 8). Every call is logged as a JSON line to $ADB_STANDIN_LOG.
  ``adb devices`` lists $ADB_STANDIN_DEVICES ("SERIAL:STATE,..."); when it is set,
  ``get-state`` answers each listed serial's state and fails for any other, as adb does.
* ``benchmark_model`` (``python adb_standin.py benchmark_model ARGS``): with
  ``--output_filepath`` it runs the model for real with ai-edge-litert on the raw input file
  and writes the raw output, as the tool does; otherwise it prints the recorded-format text in
  $ADB_STANDIN_OUTPUT (a hand-written fixture, see tests/data/benchmark_model/README.md).
"""

import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.environ.get("ADB_STANDIN_ROOT", "/nonexistent")
PHONE = "/data/local/tmp"
PROPS = {"ro.product.model": "Pixel 7", "ro.soc.model": "GS201",
         "ro.product.cpu.abi": "arm64-v8a", "ro.build.version.release": "14"}


def install(folder, output=None):
    """An ``adb`` (and the phone's ``benchmark_model``) under ``folder``; the environment
    that puts it first on PATH."""
    from pathlib import Path

    folder = Path(folder)
    bin_dir, root = folder / "bin", folder / "phone"
    (root / "data/local/tmp").mkdir(parents=True)
    bin_dir.mkdir()
    for path, mode in ((bin_dir / "adb", ""), (root / "data/local/tmp/benchmark_model",
                                                 " benchmark_model")):
        path.write_text(f'#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()}{mode} "$@"\n')
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "ADB_STANDIN_ROOT": str(root),
            "ADB_STANDIN_LOG": str(folder / "adb.log"),
            **({"ADB_STANDIN_OUTPUT": str(output)} if output else {})}


def to_host(path):
    return path.replace(PHONE, ROOT + PHONE)


def to_phone(text):
    return text.replace(ROOT + PHONE, PHONE)


def log(entry):
    with open(os.environ["ADB_STANDIN_LOG"], "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def adb(args):
    serial = None
    if args[:1] == ["-s"]:
        serial, args = args[1], args[2:]
    log({"serial": serial, "args": args})
    cmd = args[0]
    listed = dict(d.split(":", 1) for d in os.environ.get("ADB_STANDIN_DEVICES", "").split(",")
                  if d)
    if cmd == "devices":
        print("List of devices attached")
        for serial, state in listed.items():
            print(f"{serial}\t{state}")
        print()
        return 0
    if cmd == "get-state":
        if not listed:
            print("device")
            return 0
        if serial not in listed:
            print(f"error: device '{serial}' not found", file=sys.stderr)
            return 1
        print(listed[serial])
        return 0
    if cmd in ("push", "pull"):
        src, dst = (args[1], to_host(args[2])) if cmd == "push" else (to_host(args[1]), args[2])
        if os.path.isdir(src):
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy(src, dst)
        return 0
    if cmd == "shell":
        line = " ".join(args[1:])
        if line.strip() == "getprop":
            print("\n".join(f"[{k}]: [{v}]" for k, v in PROPS.items()))
            return 0
        m = re.match(r"^taskset ([0-9a-f]+) (.*)$", line, re.S)
        if m:
            log({"taskset": m.group(1)})
            line = m.group(2)
        proc = subprocess.run(["sh", "-c", to_host(line)], capture_output=True, text=True)
        sys.stdout.write(to_phone(proc.stdout))
        sys.stderr.write(to_phone(proc.stderr))
        return proc.returncode
    print(f"adb: unknown command {cmd}", file=sys.stderr)
    return 1


def benchmark_model(args):
    flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    log({"benchmark_model": flags})
    if "output_filepath" not in flags:
        sys.stdout.write(open(os.environ["ADB_STANDIN_OUTPUT"]).read())
        return 0
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=flags["graph"], num_threads=int(flags.get("num_threads", 1)))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    name, path = flags["input_layer_value_files"].replace("::", "\0").split(":", 1)
    name = name.replace("\0", ":")  # "input::0" is the tool's escape for "input:0"
    assert name == inp["name"] == flags["input_layer"], (name, inp["name"])
    x = np.fromfile(path, dtype=inp["dtype"]).reshape(inp["shape"])
    it.set_tensor(inp["index"], x)
    it.invoke()
    it.get_tensor(out["index"]).tofile(flags["output_filepath"])
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["benchmark_model"]:
        sys.exit(benchmark_model(sys.argv[2:]))
    sys.exit(adb(sys.argv[1:]))
