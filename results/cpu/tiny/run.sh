#!/usr/bin/env bash
# The first, tiny CPU runs (2-core machine, shared): 1,500 training images, 4 epochs, PGD-5 AT.
# The tables here were made by this script with OUT=/tmp/sparta_exp (hence the paths in their titles).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
OUT=${OUT:-results/cpu/tiny}
COMMON="--subset 1500 --epochs 4 --batch-size 64 --attack-steps 5 --eval-every 0 --attacks clean,pgd,cw --n 300 --seeds 3"
.venv/bin/python -m sparta compare --acts relu,swish,frelu,sparta --dataset fashion-mnist $COMMON --out $OUT/compare
.venv/bin/python -m sparta transfer --kind cross-dataset --target-dataset digits $COMMON --out $OUT/transfer
