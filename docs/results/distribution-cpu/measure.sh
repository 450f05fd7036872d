#!/usr/bin/env bash
# The scaling measurement the README quotes: the same run on 1 device, on 2 virtual CPU
# devices in one process, and in 2 processes (one device each) over 127.0.0.1.
# Usage: docs/results/distribution-cpu/measure.sh OUT_DIR   (SEPCONV_DATA names the CIFAR-10 copy)
set -euo pipefail
out=${1:?usage: measure.sh OUT_DIR}
mkdir -p "$out"
export KERAS_BACKEND=jax JAX_PLATFORMS=cpu
run="sepconv train vgg_separable --train-size 2048 --val-size 512 --epochs 3 --batch-size 128 --quiet"
python -m sepconv ${run#sepconv } --out "$out/one-device"
XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m sepconv ${run#sepconv } --devices 2 --out "$out/two-devices"
port=$((20000 + RANDOM % 20000))
for id in 1 0; do
  python -m sepconv ${run#sepconv } --coordinator 127.0.0.1:$port --num-processes 2 --process-id $id \
      --timeout 120 --out "$out/two-processes" > "$out/process-$id.log" 2>&1 &
done
wait
for folder in one-device two-devices two-processes; do
  python - "$out/$folder" <<'PY'
import json, sys
folder = sys.argv[1]
record = json.load(open(f"{folder}/config.json"))
model = json.load(open(f"{folder}/results.json"))["models"][0]
where = record["distribution"]
print(f"{folder.rsplit('/', 1)[-1]:14s} devices {where['devices']} processes {where['processes']} "
      f"img/s {model['median_images_per_s']:7.1f} per device {model['median_images_per_s_per_device']:7.1f} "
      f"final val acc {model['final_val_accuracy']:.4f} load {record['environment']['load_average']}")
PY
done
