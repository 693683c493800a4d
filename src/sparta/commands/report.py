"""sparta report DIR [DIR ...] --out REPORT_DIR: a markdown report with PNG plots.

Each DIR is a run directory or a folder with run directories below it (such as the
output of `sparta compare`). With --eps-sweep, runs lacking PGD-20 records at those eps
are evaluated first on the first N test images (eps 0 means clean accuracy). The
report also measures each Sparta site on 200 clean test images: its beta, how much its
threshold T varies, and how far its output is from ReLU's, and draws each site's learned
function x * sigmoid(beta (x - T)) against ReLU.
"""

from __future__ import annotations

import argparse

from sparta.commands._types import eps_value
from sparta.errors import SpartaError

NAME = "report"
HELP = "write a markdown report with plots (robust accuracy vs eps, training curves, threshold maps, learned functions)"
# Test images of the eps sweep when --n is not given.
SWEEP_IMAGES = 1000


def eps_list(text: str) -> list[float]:
    """argparse type for --eps-sweep: a comma list of eps values, sorted, each once."""
    values = [eps_value(item.strip()) for item in text.split(",") if item.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected a comma list of eps values, e.g. 0,0.05,0.1")
    return sorted(set(values))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The report flags: the run folders, --out, the eps sweep and threshold-map settings."""
    parser.add_argument("paths", nargs="+", metavar="DIR", help="run directories or folders that hold them")
    parser.add_argument("--out", required=True, metavar="REPORT_DIR", help="where report.md and the PNGs go")
    parser.add_argument(
        "--eps-sweep",
        type=eps_list,
        default=None,
        help="evaluate PGD-20 at these eps where records are missing, e.g. 0,0.05,0.1,0.15,0.2",
    )
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help=f"test images for the eps sweep (default: {SWEEP_IMAGES}, or the test set if smaller)",
    )
    parser.add_argument(
        "--images", type=int, default=4, help="test images in the threshold maps (default: 4; at most 32)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-root", default=None)


def run(args: argparse.Namespace) -> int:
    """Find the runs, fill in the eps sweep if asked, and write report.md with its plots."""
    from sparta.report import build_report, fill_eps_sweep, find_runs, run_names

    if args.n is not None and args.n < 1:
        raise SpartaError(f"--n must be >= 1, got {args.n}")
    if args.images < 0:
        raise SpartaError(f"--images must be >= 0, got {args.images}")
    runs = find_runs(args.paths)  # refuses a run whose model file is another run's
    if args.n is None:
        args.n = SWEEP_IMAGES  # each run's test set if smaller (fill_eps_sweep), without a note
    elif args.eps_sweep:
        args.n = _capped(args.n, "--n", runs, args.data_root)
    if args.images:
        args.images = _capped(args.images, "--images", runs, args.data_root)
    if args.eps_sweep:
        names = run_names(runs)
        for run, record in fill_eps_sweep(runs, args.eps_sweep, args.n, args.device, args.data_root):
            print(
                f"evaluated {names[run.path]}: {record['attack']:<5} eps={record['eps']:.4f}  "
                f"accuracy={100 * record['accuracy']:6.2f}%  n={record['n']}"
            )
        runs = find_runs(args.paths)
    path = build_report(runs, args.out, args.images, args.device, args.data_root)
    print(f"wrote {path} ({len(runs)} runs)")
    return 0


def _capped(count: int, flag: str, runs, data_root: str | None) -> int:
    """`count` test images at most the largest test set of the runs' data sets (and, for
    --images, a threshold-map figure's rows), with one note when it asks for more."""
    from sparta.data import split_size
    from sparta.progress import capped
    from sparta.report import MAX_MAP_IMAGES

    sizes = {
        run.config.dataset: split_size(run.config.dataset, "test", data_root or run.config.data_root) for run in runs
    }
    dataset, size = max(sizes.items(), key=lambda item: item[1])
    limit, what = size, f"the {size} test images of {dataset}"
    if flag == "--images" and MAX_MAP_IMAGES < size:
        limit, what = MAX_MAP_IMAGES, f"the {MAX_MAP_IMAGES} rows a threshold-map figure holds"
    return capped(count, limit, flag, what)
