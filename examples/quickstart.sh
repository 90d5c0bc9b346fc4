#!/usr/bin/env bash
# The main job on built-in defaults, no files needed: see how big a MobileNetV2 a Pixel 7
# budget affords (cost model, no build), build a small MobileNetV2 from the zoo,
# quantize it to int8 with the Fashion-MNIST sample shipped in edgekit, export the float
# model, and profile the int8 artifact against it (latency, memory, accuracy, fidelity).
# Usage: bash examples/quickstart.sh [OUT_DIR]   (default: $TMPDIR/edgekit-quickstart, so that
# nothing is left in the folder it is run from)
set -euo pipefail
edgekit=${EDGEKIT:-"$(dirname "$0")/../.venv/bin/edgekit"}
[ -x "$edgekit" ] || edgekit=edgekit
out=${1:-${TMPDIR:-/tmp}/edgekit-quickstart}
mkdir -p "$out"
echo "quickstart: the files go to $out"
set -x
"$edgekit" scale --device pixel7 --family mobilenet_v2 --classes 10 --top 5
"$edgekit" zoo build mobilenet_v2 --width 0.35 --resolution 96 --classes 10 -o "$out/m.keras" --force
"$edgekit" inspect "$out/m.keras"
"$edgekit" quantize "$out/m.keras" --mode int8 --calib fashion-mnist-sample:train -o "$out/m_int8.tflite" --force
"$edgekit" export "$out/m.keras" --format tflite -o "$out/m_fp32.tflite" --force
"$edgekit" profile "$out/m_int8.tflite" --data fashion-mnist-sample:test --reference "$out/m.keras" -o "$out/profile_int8.json" --force
