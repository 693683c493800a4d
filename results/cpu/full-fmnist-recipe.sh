# Sourced by results/cpu/full-fmnist.sh, full-fmnist-table.sh and full-cross-cnn.sh: claim
# (a)'s full-data recipe, once, so that the tables read the cells the workers trained and
# claim (b)'s cells train as claim (a)'s did.
#
# RECIPE: PGD-AT at eps 0.1 with PGD-5, 5 epochs, eps warm-up over the first, batch 128,
# one-cycle lr 0.05, the quick evaluation on 1,000 test images, on the CPU.
# TRAIN: the SmallCNN cells in `sparta compare`'s flags; ABLATE_TRAIN: the same in `sparta
# ablate`'s (one model and one method: --model, --method).
RECIPE="--eps 0.1 --epochs 5 --attack-steps 5 --batch-size 128 --lr 0.05 --eps-warmup-epochs 1 --eval-n 1000 --device cpu"
TRAIN="--dataset fashion-mnist --models smallcnn --methods pgd $RECIPE"
ABLATE_TRAIN="--dataset fashion-mnist --model smallcnn --method pgd $RECIPE"
