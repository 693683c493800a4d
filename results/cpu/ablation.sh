#!/usr/bin/env bash
# CPU-sized ablation of Sparta's free choices (2-core machine, no GPU), judged by AutoAttack
# on 100 test images over 3 seeds. Same training settings as run.sh, so the default Sparta
# cells of the activation comparison are the baseline (they are only read here).
# One level per factor besides share, for time (hidden width, kernel 5, beta0 16: GPU script).
# Two shards, one thread each; then the table and verdict (results/cpu/ablation.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
OUT=results/cpu/compare-fmnist-smallcnn
ARGS="--vary phi=depthwise --vary kernel_size=1 --vary beta0=1 --vary share=layer,network \
  --dataset fashion-mnist --model smallcnn --method pgd --eps 0.1 --subset 3000 --epochs 4 \
  --batch-size 64 --attack-steps 5 --lr 0.05 --eval-every 0 --seeds 3 \
  --attacks clean,pgd,cw,autoattack --n 100 --out $OUT"
.venv/bin/sparta ablate $ARGS --shard 0/2 > results/cpu/log-ablation-0.txt 2>&1 &
.venv/bin/sparta ablate $ARGS --shard 1/2 > results/cpu/log-ablation-1.txt 2>&1 &
wait
.venv/bin/sparta ablate $ARGS > results/cpu/log-ablation-table.txt
cp $OUT/ablation.md results/cpu/ablation.md
