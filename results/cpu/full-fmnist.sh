#!/usr/bin/env bash
# Claim (a) on the full Fashion-MNIST training set (60,000 images), on the 2-core CPU machine.
# SmallCNN, PGD-AT at eps 0.1 with PGD-5 (step 2.5 eps / 5), 5 epochs, eps warm-up over the
# first epoch; ReLU and Sparta x seeds 0-4, then Swish and FReLU x seeds 0-2 (the issue's
# comparison), then PSSiLU and parametric Softplus x seeds 0-2 as time allows, with Sparta
# seeds 0-4 again among them, trained with phi's gradient scaled (sparta2, below).
# PSSiLU and parametric Softplus seed 2 come first among the rest: they complete the
# comparison the claim needs. Then constant: Sparta without its spatial attention
# (phi=constant: one learned threshold per stage), seeds 0-2, as `sparta ablate --vary
# phi=constant` in $OUT2, so that its table pairs it with sparta2's cells of the same seeds:
# what the attention adds at full data. sparta2's seeds 3-4 come last: it has three paired
# seeds with ReLU already, and its verdict (level) needs no more to stand.
# Each cell: train, then clean / PGD-20 / CW on all 10,000 test images, then AutoAttack
# (standard) on the first 200. Why this budget: results/claim-a-full.md.
#
# Two workers (one thread each, nice 19, each in a session niced as a whole) take cells from one queue in the order
# relu-s0, sparta-s0, relu-s1, sparta-s1, ... so paired seeds finish together. A worker
# claims a cell with mkdir (a lock folder); rerunning the script clears stale locks and
# resumes every unfinished cell from its last epoch.
# `full-fmnist.sh worker W` adds worker W beside a running queue (2026-12-07: workers 1 and 2
# took phi=constant seeds 1 and 2 while worker 0 finished seed 0).
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/cpu/background.sh
source results/cpu/full-fmnist-recipe.sh  # TRAIN, ABLATE_TRAIN
export OMP_NUM_THREADS=1
OUT=results/cpu/full-fmnist
LOCKS=$OUT/.locks
SPARTA=".venv/bin/sparta"
QUEUE="relu:0 sparta:0 relu:1 sparta:1 relu:2 sparta:2 relu:3 sparta:3 relu:4 sparta:4
  swish:0 frelu:0 swish:1 frelu:1 swish:2 frelu:2
  pssilu:0 sparta2:0 sparta2:1 sparta2:2 psoftplus:0 pssilu:1 psoftplus:1 pssilu:2 psoftplus:2
  constant:0 constant:1 constant:2 sparta2:3 sparta2:4"
# sparta2: Sparta again, with phi's gradient scaled by G/C (results/trainability.md), in
# $OUT2 beside links to the ReLU cells, so that one table pairs them.
OUT2=results/cpu/full-fmnist-scaled
# AutoAttack on 200 in batches of 50: its progress is saved after each batch, so a session's
# end costs at most a batch (in one batch, the default, it lost the attack so far; a whole
# one takes one to two hours of a loaded core)
AUTOATTACK_BATCHES="--eval-batch-size 50"

evaluated() {  # RUN: true, and says so, when RUN has its AutoAttack record: such a cell is
  # skipped without starting Python twice (two minutes a cell under the background load, most
  # of an hour for the finished queue)
  has_autoattack "$1" && echo "$(basename "$1"): evaluated, skipped"
}

cell() {  # act seed [out]: train + clean/PGD-20/CW on 10k, then AutoAttack on 200
  evaluated "${3:-$OUT}/smallcnn-$1-pgd-seed$2" && return
  $SPARTA compare --acts "$1" --seed "$2" --seeds 1 $TRAIN --attacks clean,pgd,cw --out "${3:-$OUT}"
  $SPARTA compare --acts "$1" --seed "$2" --seeds 1 $TRAIN --attacks autoattack --n 200 $AUTOATTACK_BATCHES \
    --out "${3:-$OUT}"
}

ablation_cell() {  # factor=level seed: the variant's cell of `sparta ablate` in $OUT2 (shard 1/2 of
  # the seed: the default cell, shard 0, is sparta2's), evaluated as cell() evaluates
  evaluated "$OUT2/smallcnn-sparta_${1/=/-}-pgd-seed$2" && return
  local ablate="$SPARTA ablate --vary $1 --seed $2 --seeds 1 --shard 1/2 $ABLATE_TRAIN"
  $ablate --attacks clean,pgd,cw --out "$OUT2"
  $ablate --attacks autoattack --n 200 $AUTOATTACK_BATCHES --out "$OUT2"
}

worker() {
  for item in $QUEUE; do
    act=${item%:*} seed=${item#*:}
    mkdir "$LOCKS/$act-$seed" 2>/dev/null || continue
    echo "$(date -u +%FT%TZ) worker $1: $act seed $seed"
    where=$OUT
    if [ "$act" = constant ]; then
      nice -n 19 bash -c "ablation_cell phi=constant $seed" || echo "$(date -u +%FT%TZ) worker $1: $act seed $seed FAILED"
      continue
    fi
    if [ "$act" = sparta2 ]; then
      act=sparta where=$OUT2
      mkdir -p "$OUT2" && ln -sfn "../full-fmnist/smallcnn-relu-pgd-seed$seed" "$OUT2/smallcnn-relu-pgd-seed$seed"
    fi
    nice -n 19 bash -c "cell $act $seed $where" || echo "$(date -u +%FT%TZ) worker $1: $act seed $seed FAILED"
  done
}

export -f has_autoattack evaluated cell ablation_cell worker
export SPARTA TRAIN ABLATE_TRAIN AUTOATTACK_BATCHES OUT OUT2 LOCKS QUEUE
case ${1:-run} in
  run)
    rm -rf "$LOCKS" && mkdir -p "$LOCKS" "$OUT"
    run_workers "${WORKERS:-2}" "$OUT/log-worker{W}.txt" ;;  # WORKERS=1 leaves a core to full-digits.sh
  worker)  # W: one more worker beside a running `run` (its locks are kept), e.g. when a core frees
    mkdir -p "$LOCKS"
    niced_session "$OUT/log-worker${2:?usage: $0 worker W}.txt" "worker $2"
    wait ;;
esac
