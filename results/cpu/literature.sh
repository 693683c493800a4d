#!/usr/bin/env bash
# PSSiLU and parametric Softplus (the strongest activations of the robustness literature)
# added to the small-scale comparison of run.sh: same settings, seeds and test images, so
# the table of all eight activations and its paired differences against ReLU are fair.
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/cpu/small-grid.sh
.venv/bin/sparta compare --acts pssilu,psoftplus $TRAIN --attacks clean,pgd,cw --n 500 --out $OUT
.venv/bin/sparta compare --acts relu,swish,softplus,gelu,frelu,pssilu,psoftplus,sparta $TRAIN \
  --attacks clean,pgd,cw --n 500 --out $OUT > results/cpu/table-all-n500.txt
