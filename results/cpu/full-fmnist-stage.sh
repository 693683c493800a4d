#!/usr/bin/env bash
# Stage (git add) what results/cpu/full-fmnist.sh, full-digits.sh and full-cross-cnn.sh have produced, for a commit:
# - a finished cell (its eval.json has the AutoAttack record): config, metrics, eval records,
#   the model and its Sparta function; its training state is dropped (not needed any more);
# - an unfinished cell: the same plus its training state and the attack in progress, so a
#   fresh clone resumes it where it stopped;
# - the workers' logs, the tables and the report. Lock files stay out.
# Model files are ignored by .gitignore (results/**/*.safetensors), hence `git add -f`.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/cpu/full-fmnist
OUT2=results/cpu/full-fmnist-scaled  # sparta2 cells, beside links to the ReLU cells
DIGITS=results/cpu/full-digits       # claim (c) at full data (full-digits.sh)
SOURCES=results/cpu/full-digits-sources  # its frozen arm with each seed's own source, beside links
CROSS=results/cpu/full-cross-cnn     # claim (b) at full data (full-cross-cnn.sh)
for run in $OUT/smallcnn-*-pgd-seed* $OUT2/smallcnn-*-pgd-seed* $DIGITS/*-seed* $SOURCES/*-seed* $CROSS/*-seed*; do
  if [ -L "$run" ]; then git add "$run"; continue; fi  # a link to a cell staged under $OUT
  [ -f "$run/config.json" ] || continue
  keep="config.json metrics.jsonl eval.json model.safetensors sparta.safetensors"
  if grep -q '"autoattack"' "$run/eval.json" 2>/dev/null; then
    git rm -q --cached --ignore-unmatch "$run/checkpoint.safetensors" "$run/eval-progress.json"
    rm -f "$run/checkpoint.safetensors"
  else
    keep="$keep checkpoint.safetensors eval-progress.json"
  fi
  for file in $keep; do
    if [ -f "$run/$file" ]; then git add -f "$run/$file"; fi
  done
done
git add -f $OUT/log-worker*.txt $OUT/table-* $OUT/sanity-*.txt
for extra in $OUT2/table-* $DIGITS/table-* $DIGITS/log*.txt $DIGITS/sanity-*.txt $CROSS/table.* $CROSS/log.txt $CROSS/sanity-*.txt; do
  if [ -f "$extra" ]; then git add -f "$extra"; fi
done
for report in $OUT/report $DIGITS/report $CROSS/report; do
  if [ -d $report ]; then git add -f $report; fi
done
# the one-screen table of results/README.md, its figure and the claim pages' per-seed tables, from the records just staged
.venv/bin/python scripts/results_glance.py > /dev/null
git add README.md results/README.md results/glance.png results/claim-*.md
git status --short -- $OUT $OUT2 $DIGITS $SOURCES $CROSS results/README.md
