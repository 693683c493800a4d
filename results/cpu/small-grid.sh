# The small-scale claim-(a) grid's settings, sourced by run.sh and literature.sh so that
# every activation is trained and evaluated the same way (run from the repository root).
export OMP_NUM_THREADS=1
OUT=results/cpu/compare-fmnist-smallcnn
TRAIN="--dataset fashion-mnist --models smallcnn --methods pgd --eps 0.1 --subset 3000 --epochs 4 \
  --batch-size 64 --attack-steps 5 --lr 0.05 --eval-every 0 --seeds 3"
