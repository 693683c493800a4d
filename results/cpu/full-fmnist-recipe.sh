# Sourced by results/cpu/full-fmnist.sh and full-fmnist-table.sh: claim (a)'s full-data
# recipe, once, so that the table reads the cells the worker trained.
#
# TRAIN: `sparta compare`'s flags; ABLATE_TRAIN: the same recipe in `sparta ablate`'s flags
# (one model and one method: --model, --method).
TRAIN="--dataset fashion-mnist --models smallcnn --methods pgd --eps 0.1 --epochs 5 --attack-steps 5 \
  --batch-size 128 --lr 0.05 --eps-warmup-epochs 1 --eval-n 1000 --device cpu"
ABLATE_TRAIN=${TRAIN/--models/--model}
ABLATE_TRAIN=${ABLATE_TRAIN/--methods/--method}
