#!/usr/bin/env bash
# The full-size experiments, for one GPU. Run one block at a time (the argument names it)
# and keep the run directories under results/gpu/.
# On a GPU machine without network that has torch + CUDA and the other dependencies but not
# pyautoattack: bring its wheel (pip download pyautoattack==0.2.0 --no-deps -d .whl), install
# it with python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl,
# export PYTHONPATH=/tmp/site:src, bring Fashion-MNIST's four files and set SPARTA_DATA.
set -euo pipefail
OUT=${OUT:-results/gpu}
SPARTA="python3 -m sparta"
STEP=${1:-all}
TRAIN="--eps 0.1 --epochs 10 --attack-steps 10 --batch-size 128 --seeds 3"
FMNIST="--dataset fashion-mnist $TRAIN"
ACTS=relu,swish,softplus,gelu,frelu,sparta

case $STEP in
  speed|all)
    python3 benchmarks/speed.py --parts step --out $OUT/speed-step.md --json $OUT/speed-step.json
    python3 benchmarks/speed.py --parts loop --out $OUT/speed-loop.md --json $OUT/speed-loop.json ;;&
  compare-smallcnn|all)
    # claim (a): SmallCNN, 6 activations x 3 seeds; clean/PGD-20/CW on 10,000, AutoAttack on 1,000
    $SPARTA compare --acts $ACTS --models smallcnn $FMNIST --attacks clean,pgd,cw --out $OUT/compare-smallcnn
    $SPARTA compare --acts $ACTS --models smallcnn $FMNIST --attacks clean,pgd,cw,autoattack --n 1000 \
        --out $OUT/compare-smallcnn ;;&
  compare-resnet18|all)
    $SPARTA compare --acts $ACTS --models resnet18 $FMNIST --attacks clean,pgd,cw --out $OUT/compare-resnet18
    $SPARTA compare --acts $ACTS --models resnet18 $FMNIST --attacks clean,pgd,cw,autoattack --n 1000 \
        --out $OUT/compare-resnet18 ;;&
  ablation|all)
    # Sparta's free choices on SmallCNN, one at a time, judged by AutoAttack on 1,000 images;
    # the default cells are compare-smallcnn's sparta cells
    $SPARTA ablate --vary phi=depthwise --vary kernel_size=1,5 --vary hidden=4,16 --vary beta0=1,16 \
        --vary share=layer,network --model smallcnn $FMNIST --attacks clean,pgd,cw,autoattack --n 1000 \
        --out $OUT/compare-smallcnn ;;&
  transfer|all)
    # claim (b): ResNet-18's Sparta function, frozen, in ResNet-34 (stage to stage)
    $SPARTA transfer --kind cross-cnn --source $OUT/compare-resnet18/resnet18-sparta-pgd-seed0 \
        --target-model resnet34 --target-dataset fashion-mnist $TRAIN --attacks clean,pgd,cw,autoattack --n 1000 --out $OUT/transfer-cnn
    # claim (c): SmallCNN's Sparta function from Fashion-MNIST, frozen, on digits
    $SPARTA transfer --kind cross-dataset --source $OUT/compare-smallcnn/smallcnn-sparta-pgd-seed0 \
        --target-dataset digits --eps 0.1 --epochs 30 --attack-steps 10 --seeds 3 \
        --attacks clean,pgd,cw,autoattack --out $OUT/transfer-data ;;&
  report|all)
    $SPARTA report $OUT/compare-smallcnn $OUT/compare-resnet18 --out $OUT/report \
        --eps-sweep 0,0.05,0.1,0.15,0.2,0.3 --n 1000 ;;
esac
