#!/usr/bin/env bash
# CPU-sized activation comparison (2-core machine, no GPU): SmallCNN, Fashion-MNIST subset,
# PGD-AT. Two processes, one thread each; then AutoAttack on 100 test images for relu and sparta.
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/cpu/small-grid.sh
(
  .venv/bin/sparta compare --acts sparta,softplus $TRAIN --attacks clean,pgd,cw --n 500 --out $OUT
  .venv/bin/sparta compare --acts sparta $TRAIN --attacks clean,pgd,cw,autoattack --n 100 --out $OUT
) > results/cpu/log-p1.txt 2>&1 &
(
  .venv/bin/sparta compare --acts relu,swish,frelu,gelu $TRAIN --attacks clean,pgd,cw --n 500 --out $OUT
  .venv/bin/sparta compare --acts relu $TRAIN --attacks clean,pgd,cw,autoattack --n 100 --out $OUT
) > results/cpu/log-p2.txt 2>&1 &
wait
# the two tables over all cells (finished cells are only read)
.venv/bin/sparta compare --acts relu,swish,softplus,gelu,frelu,sparta $TRAIN --attacks clean,pgd,cw --n 500 \
  --out $OUT > results/cpu/table-all-n500.txt
.venv/bin/sparta compare --acts relu,sparta $TRAIN --attacks clean,pgd,cw,autoattack --n 100 \
  --out $OUT > results/cpu/table-autoattack-n100.txt
