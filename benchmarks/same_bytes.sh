#!/bin/sh
# The same commands on two checkouts of edgekit; prints the sha256 of every output of each,
# then the stage keys of fashion-mnist-demo with 1-epoch training run by each.
# Usage: benchmarks/same_bytes.sh OLD_CHECKOUT NEW_CHECKOUT WORKDIR   (about 20 minutes)
set -e
old=$1 new=$2 work=$3
for side in old new; do
  src=$old; [ $side = new ] && src=$new
  d=$work/$side; rm -rf $d; mkdir -p $d; cd $d
  ek() { PYTHONPATH=$src python -m edgekit "$@" --force >/dev/null 2>>log; }
  ek zoo build mobilenet_v2 --width 0.35 --resolution 96 --classes 10 -o m.keras
  ek quantize m.keras --mode int8 --calib fashion-mnist-sample:train --no-speed-check -o m_int8.tflite
  ek quantize m.keras --mode fp16 --no-speed-check -o m_fp16.tflite
  ek export m.keras -o m.tflite
  ek export m.keras --format onnx -o m.onnx
  ek quantize m.keras --format onnx --mode int8 --calib fashion-mnist-sample:train --no-speed-check -o m_int8.onnx
  ek prune m.keras --sparsity 0.5 --data fashion-mnist-sample:train --epochs 1 --limit 200 --allow-worse -o m_sparse.keras
  ek finetune m.keras --data fashion-mnist-sample:train --epochs 1 --limit 200 -o m_ft.keras
  ek scale --device raspberry-pi-4 --size-mb 0.7 --resolution 48 --classes 10 -o s.keras
  ek profile m_int8.tflite --data fashion-mnist-sample:test --limit 100 --runs 5 --reference m.keras -o p.json
  sha256sum *.keras *.tflite *.onnx | sed "s/^/$side /"
  sed 's/epochs: 20/epochs: 1/; s/patience: 8/patience: 1/' \
    "$src/edgekit/catalog/recipes/fashion-mnist-demo.yaml" > demo.yaml
  PYTHONPATH=$src python -m edgekit run demo.yaml --runs-dir runs --json 2>>log > run.json || true
  python -c "import json; [print('$side key', s['id'], s['key'], s['output']['sha256'][:16]) for s in json.load(open('run.json'))['stages']]"
done
