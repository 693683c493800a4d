# Sourced by the background experiment scripts (full-fmnist.sh, full-digits.sh,
# full-cross-cnn.sh) and their table and stage scripts.
#
# niced_session, run_workers, run_worker: run one of their exported functions in a session
# of its own, niced as a whole. Linux groups processes by session for scheduling (autogroup):
# `nice` alone only ranks a process against its own session, and one started with setsid
# then takes a full share of the CPU from the user's tests. Niceing the session's group
# makes it yield.
niced_session() {  # LOG COMMAND: run the bash command line COMMAND at nice 19, output appended to LOG
  setsid bash -c 'echo 19 > /proc/self/autogroup 2>/dev/null; exec nice -n 19 bash -c "$0"' "$2" >> "$1" 2>&1 &
}
run_workers() {  # COUNT LOG: `worker W COUNT` (W = 0 .. COUNT-1), each niced as above; {W} in LOG is W; waits
  for ((w = 0; w < $1; w++)); do
    niced_session "${2//\{W\}/$w}" "worker $w $1"
    sleep 5
  done
  wait
}
run_worker() {  # OUT: the script's exported function `worker`, niced as above, logging to OUT/log.txt; waits
  mkdir -p "$1"
  niced_session "$1/log.txt" worker
  wait
}
has_autoattack() {  # RUN: true when RUN's eval.json has an AutoAttack record, the last thing a cell measures
  grep -q '"autoattack"' "$1/eval.json" 2>/dev/null
}
trained_runs() {  # RUN...: those of the run directories (not links) whose model has trained every epoch of its config
  .venv/bin/python -c '
import sys
from pathlib import Path
from sparta.config import TrainConfig
from sparta.experiments.grid import epochs_done
for run in map(Path, sys.argv[1:]):
    if not run.is_symlink() and (run / "config.json").is_file() and epochs_done(run) >= TrainConfig.load(run).epochs:
        print(run)
' "$@"
}
