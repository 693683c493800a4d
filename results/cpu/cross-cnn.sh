#!/usr/bin/env bash
# CPU-sized cross-CNN transfer (2-core machine, no GPU): a Sparta function trained in a
# SmallCNN on Fashion-MNIST (share=network, trained here into OUT/source-...), imported
# frozen into ResNet-20, against ResNet-20 with ReLU and with Sparta from scratch.
# Same training settings as run.sh; one thread. PGD-20 and CW on 200 test images, then
# AutoAttack on 100.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
OUT=results/cpu/cross-cnn-smallcnn-resnet20
ARGS="--kind cross-cnn --source-model smallcnn --source-dataset fashion-mnist --target-model resnet20 \
  --method pgd --eps 0.1 --subset 3000 --epochs 4 --batch-size 64 --attack-steps 5 --lr 0.05 \
  --eval-every 0 --seeds 3 --out $OUT"
.venv/bin/sparta transfer $ARGS --attacks clean,pgd,cw --n 200 > results/cpu/table-cross-cnn-n200.txt
.venv/bin/sparta transfer $ARGS --attacks clean,pgd,cw,autoattack --n 100 > results/cpu/table-cross-cnn-autoattack-n100.txt
# The AutoAttack step above did not fit in the session for the from-scratch arm; what ran:
# AutoAttack on 100 images for the ReLU and the frozen arms only, two processes:
#   for r in relu-resnet20-fashion-mnist-seed{0,1,2} sparta-frozen-resnet20-fashion-mnist-seed{0,1,2}; do
#     .venv/bin/sparta eval $OUT/$r --attacks clean,pgd,cw,autoattack --n 100; done
