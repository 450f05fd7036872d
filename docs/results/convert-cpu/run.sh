#!/usr/bin/env bash
# Conversion evidence: the fully trained tutorial VGG -> DSC at ranks 1, 2, 4 and exact,
# each fine-tuned for one epoch on 10,000 training images (exact: accuracy right after conversion only).
set -u
export KERAS_BACKEND=tensorflow  # and SEPCONV_DATA: the CIFAR-10 copy
IN=${IN:-runs/tutorial-full/vgg/final.keras}
for rank in 1 2 4 full; do
  flag=$([ "$rank" = full ] && echo "" || echo "--rank $rank")
  extra=$([ "$rank" = full ] && echo "--train-size 1000" || echo "--train-size 10000")
  start=$(date +%s)
  sepconv convert "$IN" "vgg-rank-$rank.keras" $flag \
    --calibration-data "$SEPCONV_DATA" --finetune-epochs 1 --data "$SEPCONV_DATA" $extra --json \
    > "rank-$rank.json" 2> "rank-$rank.err"
  echo "rank $rank exit $? $(( $(date +%s) - start )) s"
done
