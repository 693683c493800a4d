#!/usr/bin/env bash
# The full-data CPU experiments in the background, all at once: they end with the machine's
# session, and each resumes where it stopped when started again.
#
#   bash results/cpu/background-all.sh start    # two workers each for claims (a), (c) and (b)
#   bash results/cpu/background-all.sh status   # each worker's session, age and command; each log's last line and age
#
# start refuses while a worker of these experiments runs: starting twice would run two
# workers per shard. To stop one experiment, kill its sessions (`kill -- -SID`, SID from
# status); the workers of full-digits.sh and full-cross-cnn.sh both show as `bash -c worker`,
# so take the SID from the line that names the experiment's folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
EXPERIMENTS="full-fmnist full-digits full-cross-cnn"

workers() {  # the running sparta processes of these experiments: SID, age, command
  ps -eo sid=,etime=,args= | grep -E "sparta (compare|ablate|transfer|eval)" | grep -E "results/cpu/full-" | grep -v grep || true
}

case ${1:-status} in
  start)
    if [ -n "$(workers)" ]; then
      echo "background-all.sh: workers are running already (stop them first):" >&2
      workers | cut -c1-160 >&2
      exit 1
    fi
    for name in $EXPERIMENTS; do
      # two workers each; (b)'s queue is finished, so its script only confirms that and ends
      WORKERS=2 setsid nohup "results/cpu/$name.sh" run > "/tmp/sparta-$name.log" 2>&1 &
      echo "started results/cpu/$name.sh (output: /tmp/sparta-$name.log)"
    done ;;
  status)
    echo "workers (SID, age, command):"
    workers | python3 -c '
import re, sys
for line in sys.stdin:
    sid, age, command = line.split(None, 2)
    flag = lambda name: (re.findall(rf"--{name} (\S+)", command) or ["-"])[-1]
    what = " ".join(f"{name} {flag(name)}" for name in ("acts", "vary", "source", "seed", "attacks", "shard") if flag(name) != "-")
    out = flag("out")
    print(f"  {sid:>7} {age:>11}  {command.split()[2]} --out {out}: {what}")'
    for log in results/cpu/full-fmnist/log-worker*.txt results/cpu/full-digits/log*.txt results/cpu/full-cross-cnn/log.txt; do
      # how long ago the log last grew: an old one is a worker of an earlier session, not a live one
      [ -f "$log" ] && printf '%s (%s min ago): %s\n' "$log" "$(( ($(date +%s) - $(stat -c %Y "$log")) / 60 ))" \
        "$(grep -v '^$' "$log" | tail -n 1 | cut -c1-150)"
    done ;;
  *)
    echo "usage: $0 start|status" >&2
    exit 2 ;;
esac
