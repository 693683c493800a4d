"""Ship a finished run as a pretrained model: `sparta.load_pretrained(NAME)` then loads it.

    .venv/bin/python scripts/ship_pretrained.py RUN_DIR NAME --command "the command that trained it"

It first adds a clean-accuracy record on the first 1,000 test images (if missing), which
tests/test_pretrained.py re-checks, then copies the run's files into
src/sparta/pretrained_models/NAME/.
"""

from __future__ import annotations

import argparse
import sys

from sparta.errors import SpartaError
from sparta.evaluation import evaluate_run
from sparta.pretrained import ship
from sparta.runfiles import find_record, read_eval_records

SLICE = 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("name")
    parser.add_argument("--command", required=True, help="the command that trained the run")
    args = parser.parse_args(argv)
    try:
        if find_record(read_eval_records(args.run_dir), "clean", 0.0, SLICE) is None:
            evaluate_run(args.run_dir, ["clean"], n=SLICE, device="cpu")
        print(f"shipped {ship(args.run_dir, args.name, args.command)}")
    except SpartaError as err:
        print(f"ship_pretrained: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
