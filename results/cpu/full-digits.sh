#!/usr/bin/env bash
# Claim (c) at full data on the 2-core CPU machine: the Sparta function of the full-data
# Fashion-MNIST SmallCNN (results/cpu/full-fmnist/smallcnn-sparta-pgd-seed0, the shipped
# `smallcnn-sparta-fashion-mnist`), frozen, in a SmallCNN trained on all of digits'
# training split (1,347 images), against ReLU and Sparta from scratch on the same seeds.
# PGD-AT at eps 0.1 with PGD-10 from the first step (no warm-up), 30 epochs of batch 64
# (630 steps: far past the first-epoch regime), one-cycle lr 0.05; 10 seeds. Evaluation:
# clean, PGD-20 and CW-30 on all 450 test images for every cell, then AutoAttack
# (standard) on all 450 for seeds 0-4.
#
# One worker (nice 19, its session niced as a whole, as full-fmnist.sh), so that it can
# share the machine with full-fmnist.sh's queue. It resumes where it stopped: finished
# cells are only read, a killed training resumes from its last save.
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/cpu/background.sh
export OMP_NUM_THREADS=1
OUT=results/cpu/full-digits
SPARTA=".venv/bin/sparta"
TRANSFER="--kind cross-dataset --source results/cpu/full-fmnist/smallcnn-sparta-pgd-seed0 --target-dataset digits \
  --eps 0.1 --epochs 30 --attack-steps 10 --batch-size 64 --lr 0.05 --eval-n 450 --device cpu"

worker() {
  $SPARTA transfer $TRANSFER --seeds 10 --attacks clean,pgd,cw --out $OUT
  $SPARTA transfer $TRANSFER --seeds 5 --attacks autoattack --out $OUT
}

export -f worker
export SPARTA TRANSFER OUT
case ${1:-run} in
  run) run_worker "$OUT" ;;
esac
