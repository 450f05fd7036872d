#!/usr/bin/env bash
# Export evidence (TensorFlow 2.21, the 2-core shared CPU): two small models trained briefly,
# exported to ONNX and LiteRT, float32 and int8, each checked in its runtime on the 10,000
# CIFAR-10 test images; every registry model exported and checked; the runtime benchmark.
set -u
export KERAS_BACKEND=tensorflow  # and SEPCONV_DATA: the CIFAR-10 copy
for model in vgg_separable vgg_mobilenet; do
  sepconv train $model --train-size 20000 --epochs 4 --out train/$model --quiet
  for fmt in onnx tflite; do
    sepconv export train/$model/$model/final.keras $model.$fmt --data "$SEPCONV_DATA" \
      --json --output-json check-$model-float32-$fmt.json > /dev/null
    sepconv export train/$model/$model/final.keras $model-int8.$fmt --quantize int8 --calibration-size 1024 \
      --data "$SEPCONV_DATA" --json --output-json check-$model-int8-$fmt.json > /dev/null
  done
  cp train/$model/config.json train-$model-config.json; cp train/$model/results.json train-$model-results.json
done
python tools/export_zoo.py --output zoo-tensorflow.json > /dev/null
sepconv bench export vgg vgg_separable dsc_resnet10 --threads 1 --profile --output bench-tensorflow.json
sepconv bench export vgg_separable dsc_resnet10 --format onnx --precision float32 int8 int8-a16 --threads 1 --output bench-int8-a16-tensorflow.json
# A converged model: dsc_resnet10 from `sepconv train dsc_resnet10 --recipe fast` (docs/results/fast-dsc_resnet10).
model=../../../runs/fast-dsc_resnet10/dsc_resnet10/best.keras  # run from this folder; the weights are not committed
for fmt in onnx tflite; do
  sepconv export $model dsc_resnet10.$fmt --data "$SEPCONV_DATA" --json --output-json check-dsc_resnet10-float32-$fmt.json > /dev/null
  sepconv export $model dsc_resnet10-int8.$fmt --quantize int8 --calibration-size 1024 --data "$SEPCONV_DATA" \
    --json --output-json check-dsc_resnet10-int8-$fmt.json > /dev/null
  # int8 after one epoch of quantization-aware fine-tuning, distilled from the float model
  sepconv export $model dsc_resnet10-qat-int8.$fmt --quantize int8 --calibration-size 1024 --qat-epochs 1 \
    --data "$SEPCONV_DATA" --json --output-json check-dsc_resnet10-qat-int8-$fmt.json > /dev/null
done
# ONNX Runtime int8 with percentile ranges and the first 2 activations on 16 bits, on both dsc_resnet10 models
# (the 60-minute run's: docs/results/budget60-dsc_resnet10), post-training and after one epoch of QAT.
# `sepconv export` exits 1 when agreement is under 99%: `|| true` keeps the script going.
for model in ../../../runs/fast-dsc_resnet10/dsc_resnet10/best.keras ../../../runs/budget60-dsc_resnet10/dsc_resnet10/final.keras; do
  case $model in *budget60*) name=dsc_resnet10-budget60 ;; *) name=dsc_resnet10 ;; esac
  common="--quantize int8 --calibration-size 1024 --data $SEPCONV_DATA --json"
  [ $name = dsc_resnet10 ] || sepconv export $model $name-int8.onnx $common --output-json check-$name-int8-onnx.json > /dev/null || true
  sepconv export $model $name-pct.onnx $common --calibration-method percentile \
    --output-json check-$name-int8-percentile-onnx.json > /dev/null || true
  sepconv export $model $name-pct-a16.onnx $common --calibration-method percentile --int16-activations 2 \
    --output-json check-$name-int8-percentile-a16-onnx.json > /dev/null || true
  sepconv export $model $name-qat-pct-a16.onnx $common --calibration-method percentile --int16-activations 2 \
    --qat-epochs 1 --output-json check-$name-qat-int8-percentile-a16-onnx.json > /dev/null || true
done
# LiteRT int8 with percentile ranges and the first operators in float32, on the `fast` dsc_resnet10 (rerun of
# docs/results/fast-dsc_resnet10's command, --out runs/fast-dsc_resnet10): settings chosen on held-out training images,
# then the test set once, post-training and after one epoch of QAT; what the float32 operators cost.
model=../../../runs/fast-dsc_resnet10/dsc_resnet10/best.keras
python select_int8.py $model --format tflite --output select-dsc_resnet10-tflite.json  # float_ops 0-2
python select_int8.py $model --format tflite --ranges 99.99 99.999 --counts 3 4 6 --output select-dsc_resnet10-tflite-more.json
common="--quantize int8 --calibration-size 1024 --data $SEPCONV_DATA --json"
sepconv export $model dsc_resnet10-pct.tflite $common --calibration-method percentile \
  --output-json check-dsc_resnet10-int8-percentile-tflite.json > /dev/null || true
sepconv export $model dsc_resnet10-pct-f3.tflite $common --calibration-method percentile --float-ops 3 \
  --output-json check-dsc_resnet10-int8-percentile-f3-tflite.json > /dev/null || true
sepconv export $model dsc_resnet10-qat-pct-f3.tflite $common --calibration-method percentile --float-ops 3 \
  --qat-epochs 1 --output-json check-dsc_resnet10-qat-int8-percentile-f3-tflite.json > /dev/null || true
# (check-dsc_resnet10-qat-int8-percentile-f3-unsimulated-tflite.json: the same command at commit 1c031a6, whose QAT
# simulation still rounded the float32 operators)
sepconv bench export vgg_separable dsc_resnet10 --format litert --precision float32 int8 int8-f32 --float-ops 3 \
  --threads 1 --output bench-int8-f32-tensorflow.json
# QAT's step size chosen on the held-out training images too (QAT over the other 40,000), then the test set once
# per format with the pick (commit 16b5d01: --float-ops counts convolution and dense operators, the same 3 here).
python select_int8.py $model --format tflite --ranges 99.999 --counts 3 --qat-epochs 1 --qat-learning-rates 1e-3 3e-4 3e-3 \
  --output select-dsc_resnet10-tflite-qat.json
python select_int8.py $model --format onnx --ranges 99.999 --counts 2 --qat-epochs 0 1 --qat-learning-rates 3e-4 1e-3 3e-3 \
  --output select-dsc_resnet10-onnx-qat.json
sepconv export $model dsc_resnet10-qat3e-3-pct-f3.tflite $common --calibration-method percentile --float-ops 3 \
  --qat-epochs 1 --qat-learning-rate 3e-3 --output-json check-dsc_resnet10-qat3e-3-int8-percentile-f3-tflite.json > /dev/null || true
sepconv export $model dsc_resnet10-qat3e-4-pct-a16.onnx $common --calibration-method percentile --int16-activations 2 \
  --qat-epochs 1 --qat-learning-rate 3e-4 --output-json check-dsc_resnet10-qat3e-4-int8-percentile-a16-onnx.json > /dev/null || true
