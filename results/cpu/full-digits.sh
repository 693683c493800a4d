#!/usr/bin/env bash
# Claim (c) at full data on the 2-core CPU machine: the Sparta function of the full-data
# Fashion-MNIST SmallCNN (results/cpu/full-fmnist/smallcnn-sparta-pgd-seed0, trained before
# phi's gradient was scaled), frozen, in a SmallCNN trained on all of digits'
# training split (1,347 images), against ReLU and Sparta from scratch on the same seeds.
# PGD-AT at eps 0.1 with PGD-10 from the first step (no warm-up), 30 epochs of batch 64
# (630 steps: far past the first-epoch regime), one-cycle lr 0.05; 10 seeds. Evaluation:
# clean, PGD-20 and CW-30 on all 450 test images for every cell, then AutoAttack
# (standard) on all 450 for seeds 0-4.
#
# One source's function for every seed says nothing of how much the finding depends on
# that one function. So the frozen arm runs again on seeds 0-4 with each seed's own source,
# claim (a)'s Sparta SmallCNN of the same seed, in $SOURCES beside links to the ReLU and
# Sparta-from-scratch cells (and, for seed 0, to the frozen cell: its source is seed 0's).
# Clean, PGD-20 and CW-30 on all 450; about 15 minutes of one core a cell. Then AutoAttack on
# all 450 for those frozen cells, seeds 1-4 in order (seed 0's is the frozen cell's), so that
# the row has an AutoAttack interval from three seeds first, then from five.
#
# Two workers (nice 19, each in a session niced as a whole, as full-fmnist.sh), so that they
# share the machine with full-fmnist.sh's queue: one trains and evaluates the ten seeds and
# then joins the other, which runs AutoAttack on seeds 0-4 from the start (about 35 minutes
# of one core a cell, so it is most of the budget). A seed's AutoAttack is claimed with
# mkdir (a lock folder), so no two workers attack the same cell. They resume where they
# stopped: finished cells and evaluations are only read, a killed training resumes from its
# last save.
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/cpu/background.sh
export OMP_NUM_THREADS=1
OUT=results/cpu/full-digits
LOCKS=$OUT/.locks
SPARTA=".venv/bin/sparta"
SOURCES=results/cpu/full-digits-sources
SOURCE="results/cpu/full-fmnist/smallcnn-sparta-pgd-seed"  # claim (a)'s Sparta runs, seed appended
TARGET="--kind cross-dataset --target-dataset digits \
  --eps 0.1 --epochs 30 --attack-steps 10 --batch-size 64 --lr 0.05 --eval-n 450 --device cpu"
TRANSFER="--source ${SOURCE}0 $TARGET"

autoattack_worker() {  # AutoAttack on all 450 for each unclaimed seed of 0-4
  for seed in 0 1 2 3 4; do
    mkdir "$LOCKS/autoattack-$seed" 2>/dev/null || continue
    $SPARTA transfer $TRANSFER --seed "$seed" --seeds 1 --attacks autoattack --eval-batch-size 90 \
      --shard 0/1 --out $OUT  # batches of 90 so that a killed attack resumes; no table
  done
}

own_source_worker() {  # the frozen arm of seeds 0-4, each with its own seed's source
  mkdir -p "$SOURCES"
  for seed in 0 1 2 3 4; do
    for arm in relu sparta-scratch $([ "$seed" = 0 ] && echo sparta-frozen); do
      ln -sfn "../full-digits/$arm-smallcnn-digits-seed$seed" "$SOURCES/$arm-smallcnn-digits-seed$seed"
    done
    $SPARTA transfer --source "$SOURCE$seed" $TARGET --seed "$seed" --seeds 1 --attacks clean,pgd,cw --shard 0/1 \
      --out $SOURCES  # no table of one seed: claim-c.md has the tables
  done
}

own_source_autoattack() {  # AutoAttack on all 450 for the own-source frozen cells of seeds 1-4
  for seed in 1 2 3 4; do
    mkdir "$LOCKS/own-source-autoattack-$seed" 2>/dev/null || continue
    $SPARTA transfer --source "$SOURCE$seed" $TARGET --seed "$seed" --seeds 1 --attacks autoattack \
      --eval-batch-size 90 --shard 0/1 --out $SOURCES  # ReLU and from scratch: links, already attacked
  done
}

worker() {
  $SPARTA transfer $TRANSFER --seeds 10 --attacks clean,pgd,cw --out $OUT
  own_source_worker
  autoattack_worker
  own_source_autoattack
}

export -f worker autoattack_worker own_source_worker own_source_autoattack
export SPARTA TRANSFER TARGET SOURCE SOURCES OUT LOCKS
case ${1:-run} in
  run)
    rm -rf "$LOCKS" && mkdir -p "$LOCKS"
    niced_session "$OUT/log-autoattack.txt" autoattack_worker
    run_worker "$OUT" ;;
  worker) run_worker "$OUT" ;;  # the training worker alone, beside a running AutoAttack worker
esac
