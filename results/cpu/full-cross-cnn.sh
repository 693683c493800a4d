#!/usr/bin/env bash
# Claim (b) at full data on the 2-core CPU machine: a Sparta SmallCNN trained on all 60,000
# Fashion-MNIST images with share=network (one phi for the network, so it fits any CNN)
# and claim (a)'s recipe gives its function, frozen, to a ResNet-20 trained on all 60,000
# images with the same recipe, against ReLU and Sparta from scratch in ResNet-20 on the
# same seed. One source per seed (OUT/source-smallcnn-fashion-mnist-seed<S>), seeds 0-2.
# Recipe (claim (a), results/claim-a-full.md): PGD-AT at eps 0.1 with PGD-5 (step 2.5 eps / 5),
# 5 epochs, eps warm-up over the first epoch, batch 128, one-cycle lr 0.05. Evaluation:
# clean, PGD-20 and CW-30 on all 10,000 test images, then AutoAttack (standard) on the
# first 200.
#
# Budget, measured on the first cell (ResNet-20 ReLU, seed 0, beside two other experiments
# on the two cores): 6,732 s of training (39-49 img/s), PGD-20 on 10,000 in 689 s, CW-30 in
# 1,497 s; about 2.5 hours of one core a cell, about 8 a seed with its source, so three
# seeds take several sessions of background time (results/claim-b.md).
#
# Two workers (nice 19, each in a session niced as a whole, as full-fmnist.sh), WORKERS to
# change it: each takes its shard of every seed's arms (--shard W/2: ReLU and frozen for one,
# Sparta from scratch for the other), and both run the seed's source first; a cell's run lock
# makes the second wait for the first to train it, then only read it. They resume where they
# stopped: finished cells are only read, a killed training resumes from its last save.
#
# `full-cross-cnn.sh cell SEED SHARD` runs one shard of one seed's arms, then their
# AutoAttack, in a third session beside the workers (niced the same way, logging to
# OUT/log.txt), with the same flags: `cell 2 2/3` is seed 2's frozen arm, whose worker
# (shard 0/2) would otherwise train it only after ReLU. The worker then waits on the cell's
# run lock and reads it.
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/cpu/background.sh
source results/cpu/full-fmnist-recipe.sh  # RECIPE: claim (a)'s
export OMP_NUM_THREADS=1
OUT=results/cpu/full-cross-cnn
SPARTA=".venv/bin/sparta"
TRANSFER="--kind cross-cnn --source-model smallcnn --source-dataset fashion-mnist --target-model resnet20 \
  --share network $RECIPE --seeds 1"
AUTOATTACK_BATCHES="--eval-batch-size 50"  # progress is saved after each batch of 50

measure() {  # SEED SHARD: train SHARD of SEED's arms (and the source), then clean, PGD-20, CW-30 on all 10,000
  $SPARTA transfer $TRANSFER --seed "$1" --attacks clean,pgd,cw --n 10000 --shard "$2" --out $OUT
}
autoattack() {  # SEED SHARD: AutoAttack on the first 200 for SHARD of SEED's arms
  # in batches: a session's end costs at most one
  $SPARTA transfer $TRANSFER --seed "$1" --attacks autoattack --n 200 $AUTOATTACK_BATCHES --shard "$2" --out $OUT
}
worker() {  # W K: shard W of K of every seed's arms, every seed measured before any AutoAttack
  for seed in 0 1 2; do measure "$seed" "$1/$2"; done
  for seed in 0 1 2; do autoattack "$seed" "$1/$2"; done
}
cell() {  # SEED SHARD: one shard of one seed, measured then attacked
  measure "$1" "$2"
  autoattack "$1" "$2"
}

export -f measure autoattack worker cell
export SPARTA TRANSFER AUTOATTACK_BATCHES OUT
case ${1:-run} in
  run)
    mkdir -p "$OUT"
    run_workers "${WORKERS:-2}" "$OUT/log.txt" ;;
  cell)
    [ $# -eq 3 ] || { echo "usage: $0 cell SEED SHARD (e.g. cell 2 2/3)" >&2; exit 2; }
    niced_session "$OUT/log.txt" "cell $2 $3"
    wait ;;
  *)
    echo "usage: $0 [run | cell SEED SHARD]" >&2
    exit 2 ;;
esac
