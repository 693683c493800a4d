#!/usr/bin/env bash
# Stage (git add) what results/cpu/full-fmnist.sh, full-digits.sh and full-cross-cnn.sh have produced, for a commit:
# - every cell: config, metrics, eval records, the model and its Sparta function;
# - a cell still training: its training state too, so a fresh clone resumes it where it
#   stopped; once every epoch is trained the state is dropped (the model is all that is
#   evaluated, and each commit of a 2.5 MB state would stay in the history);
# - a cell still being evaluated (no AutoAttack record yet): the attack in progress too.
# - the workers' logs, the tables, the report and the shipped models. Lock files stay out.
# Model files are ignored by .gitignore (results/**/*.safetensors), hence `git add -f`.
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/cpu/background.sh
OUT=results/cpu/full-fmnist
OUT2=results/cpu/full-fmnist-scaled  # sparta2 cells, beside links to the ReLU cells
DIGITS=results/cpu/full-digits       # claim (c) at full data (full-digits.sh)
SOURCES=results/cpu/full-digits-sources  # its frozen arm with each seed's own source, beside links
CROSS=results/cpu/full-cross-cnn     # claim (b) at full data (full-cross-cnn.sh)
RUNS="$OUT/smallcnn-*-pgd-seed* $OUT2/smallcnn-*-pgd-seed* $DIGITS/*-seed* $SOURCES/*-seed* $CROSS/*-seed*"
trained=$(trained_runs $RUNS)  # the runs (not links) whose model has reached its last epoch
for run in $RUNS; do
  if [ -L "$run" ]; then git add "$run"; continue; fi  # a link to a cell staged under $OUT
  [ -f "$run/config.json" ] || continue
  keep="config.json metrics.jsonl eval.json model.safetensors sparta.safetensors"
  if grep -qxF "$run" <<< "$trained"; then
    git rm -q --cached --ignore-unmatch "$run/checkpoint.safetensors"
    rm -f "$run/checkpoint.safetensors"
  else
    keep="$keep checkpoint.safetensors"
  fi
  if has_autoattack "$run"; then
    git rm -q --cached --ignore-unmatch "$run/eval-progress.json"
  else
    keep="$keep eval-progress.json"
  fi
  for file in $keep; do  # a file the run has since removed (a finished attack's progress) leaves the index too
    if [ -f "$run/$file" ]; then git add -f "$run/$file"; else git rm -q --cached --ignore-unmatch "$run/$file"; fi
  done
done
git add -f $OUT/log-worker*.txt $OUT/table-* $OUT/sanity-*.txt
for extra in $OUT2/table-* $DIGITS/table-* $DIGITS/log*.txt $DIGITS/sanity-*.txt $CROSS/table.* $CROSS/log.txt $CROSS/sanity-*.txt; do
  if [ -f "$extra" ]; then git add -f "$extra"; fi
done
git add -f src/sparta/pretrained_models  # the models full-fmnist-table.sh ships
for report in $OUT/report $DIGITS/report $CROSS/report $CROSS/report-sources; do
  if [ -d $report ]; then git add -f $report; fi
done
# the one-screen table of results/README.md, its figure and the claim pages' per-seed tables, from the records just staged
.venv/bin/python scripts/results_glance.py > /dev/null
git add README.md results/README.md results/glance.png results/claim-*.md
git status --short -- $OUT $OUT2 $DIGITS $SOURCES $CROSS results/README.md
