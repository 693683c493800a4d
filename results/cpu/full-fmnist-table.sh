#!/usr/bin/env bash
# The tables of results/cpu/full-fmnist.sh from the cells that have finished (nothing is
# trained), the seed-0 model of each finished activation shipped as a pretrained model, and
# the report of the finished cells.
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/cpu/background.sh
source results/cpu/full-fmnist-recipe.sh  # RECIPE, TRAIN, ABLATE_TRAIN: what full-fmnist.sh trains
OUT=results/cpu/full-fmnist
.venv/bin/sparta compare --acts relu,sparta,swish,frelu,pssilu,psoftplus --seeds 5 $TRAIN --attacks clean,pgd,cw \
  --out $OUT --table-only > $OUT/table-n10000.md
mv $OUT/table.csv $OUT/table-n10000.csv; rm -f $OUT/table.md
.venv/bin/sparta compare --acts relu,sparta,swish,frelu,pssilu,psoftplus --seeds 5 $TRAIN --attacks autoattack --n 200 \
  --out $OUT --table-only > $OUT/table-autoattack-n200.md
mv $OUT/table.csv $OUT/table-autoattack-n200.csv; rm -f $OUT/table.md
# Sparta with phi's gradient scaled (sparta2 cells), paired with the same ReLU cells
OUT2=results/cpu/full-fmnist-scaled
if compgen -G "$OUT2/smallcnn-sparta-pgd-seed*/eval.json" > /dev/null; then
  .venv/bin/sparta compare --acts relu,sparta --seeds 5 $TRAIN --attacks clean,pgd,cw --out $OUT2 --table-only \
    > $OUT2/table-n10000.md
  mv $OUT2/table.csv $OUT2/table-n10000.csv; rm -f $OUT2/table.md
  .venv/bin/sparta compare --acts relu,sparta --seeds 5 $TRAIN --attacks autoattack --n 200 --out $OUT2 \
    --table-only > $OUT2/table-autoattack-n200.md
  mv $OUT2/table.csv $OUT2/table-autoattack-n200.csv; rm -f $OUT2/table.md
fi
# Sparta without attention (phi=constant, full-fmnist.sh's `constant` cells) against sparta2, paired per seed
if compgen -G "$OUT2/smallcnn-sparta_phi-constant-pgd-seed*/eval.json" > /dev/null; then
  for table in "clean,pgd,cw n10000" "autoattack autoattack-n200"; do
    set -- $table
    if .venv/bin/sparta ablate --vary phi=constant --seeds 3 $ABLATE_TRAIN --attacks $1 \
      $([ $1 = autoattack ] && echo --n 200) --out $OUT2 --table-only > /dev/null 2>&1; then
      mv $OUT2/ablation.md $OUT2/table-ablation-$2.md; mv $OUT2/ablation.csv $OUT2/table-ablation-$2.csv
    fi
    rm -f $OUT2/ablation.md $OUT2/ablation.csv
  done
fi
# Claim (c)'s tables (full-digits.sh): clean / PGD-20 / CW-30 over the 10 seeds, AutoAttack over seeds 0-4
DIGITS=results/cpu/full-digits
DIGITS_TRANSFER="--kind cross-dataset --source results/cpu/full-fmnist/smallcnn-sparta-pgd-seed0 --target-dataset digits \
  --eps 0.1 --epochs 30 --attack-steps 10 --batch-size 64 --lr 0.05 --eval-n 450 --device cpu --out $DIGITS --table-only"
for table in "10 clean,pgd,cw n450" "5 autoattack autoattack-n450"; do
  set -- $table
  if .venv/bin/sparta transfer $DIGITS_TRANSFER --seeds $1 --attacks $2 > $DIGITS/table-$3.md 2> /dev/null; then
    mv $DIGITS/table.csv $DIGITS/table-$3.csv
  else
    rm -f $DIGITS/table-$3.md  # no finished cell yet
  fi
  rm -f $DIGITS/table.md $DIGITS/table.csv
done
ship() {  # NAME RUN MODEL_FLAGS: ship RUN as NAME once it has its AutoAttack record
  if has_autoattack $2; then
    .venv/bin/python scripts/ship_pretrained.py $2 $1 \
      --command "sparta train --dataset fashion-mnist $3 --method pgd $RECIPE --seed 0 --out RUN_DIR"
  fi
}
for act in relu sparta swish frelu pssilu psoftplus; do
  run=$OUT/smallcnn-$act-pgd-seed0
  # Sparta ships as today's code trains it (phi's gradient scaled), so its command reproduces it
  if [ $act = sparta ]; then run=$OUT2/smallcnn-sparta-pgd-seed0; fi
  ship smallcnn-$act-fashion-mnist $run "--model smallcnn --act $act"
done
# Claim (b)'s ResNet-20 arms of seed 0 (full-cross-cnn.sh), trained with share=network
CROSS=results/cpu/full-cross-cnn
ship resnet20-relu-fashion-mnist $CROSS/relu-resnet20-fashion-mnist-seed0 "--model resnet20 --act relu --share network"
ship resnet20-sparta-fashion-mnist $CROSS/sparta-scratch-resnet20-fashion-mnist-seed0 \
  "--model resnet20 --act sparta --share network"
# The report of the finished cells (those with their AutoAttack record): curves, threshold
# maps, and what each Sparta site learned (beta, T's spread, distance from ReLU).
finished=$(for run in $OUT/smallcnn-*-pgd-seed*; do
  if has_autoattack $run; then echo $run; fi
done)
.venv/bin/sparta report $finished --out $OUT/report --images 4 --device cpu > /dev/null
# Claims (b) and (c): the training curves of the target cells evaluated so far (how fast
# each arm learns), from full-cross-cnn.sh's ResNet-20 cells and full-digits.sh's cells.
for cells in "results/cpu/full-cross-cnn/*-resnet20-*-seed*" "results/cpu/full-digits/*-seed*"; do
  evaluated=$(for run in $cells; do if [ -f $run/eval.json ]; then echo $run; fi; done)
  if [ -n "$evaluated" ]; then
    .venv/bin/sparta report $evaluated --out "$(dirname "${cells%% *}")/report" --images 0 --device cpu > /dev/null
  fi
done
# Claim (b)'s sources (SmallCNN, share=network) that have trained all 5 epochs: what the
# function each frozen arm imports had learned.
sources=$(trained_runs results/cpu/full-cross-cnn/source-smallcnn-*-seed*)
if [ -n "$sources" ]; then
  .venv/bin/sparta report $sources --out results/cpu/full-cross-cnn/report-sources --images 0 --device cpu > /dev/null
fi
