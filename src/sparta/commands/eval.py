"""sparta eval RUN_DIR: accuracy under attacks on the first N test images; writes eval.json.

Each attack's record goes in when it ends; the attack in progress is saved after every
batch, so running the same command again after a kill continues where it stopped.

With --sanity it also runs the checks against gradient masking (sparta.sanity), prints
one PASS/FAIL line per check, stores them in eval.json under "sanity", and exits with 1
when any check fails.
"""

from __future__ import annotations

import argparse

from sparta.commands._types import eps_value, name_list
from sparta.errors import SpartaError
from sparta.runfiles import EvalRecord

NAME = "eval"
HELP = "evaluate a run directory under attacks; writes eval.json"
DEFAULT_ATTACKS = ["clean", "pgd"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The eval flags: the run directory, attacks, --sanity and the evaluation budget."""
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run directory written by sparta train (or compare, transfer, ablate)"
    )
    parser.add_argument(
        "--attacks",
        type=name_list,
        default=None,
        help="comma list of clean,fgsm,pgd,cw,autoattack,square (default: clean,pgd; none with --sanity)",
    )
    parser.add_argument(
        "--sanity",
        action="store_true",
        help="check for gradient masking: eps sweep, stronger PGD, black-box Square, "
        "eps ball and [0, 1]; exit status 1 if a check fails",
    )
    parser.add_argument("--n", type=int, default=None, help="first N test images (default and at most: all)")
    parser.add_argument("--eps", type=eps_value, default=None, help="default: the run's training eps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--data-root", default=None)


def run(args: argparse.Namespace) -> int:
    """Evaluate the run under the attacks (and the sanity checks), print one line each; eval.json keeps them."""
    from sparta.evaluation import evaluate_run, worst_case
    from sparta.progress import say

    args.n = _image_count(args)
    attacks = args.attacks if args.attacks is not None else ([] if args.sanity else DEFAULT_ATTACKS)
    if attacks or args.attacks is not None:  # an empty --attacks is an error, not nothing to do
        records = evaluate_run(
            args.run_dir,
            attacks,
            n=args.n,
            eps=args.eps,
            device=args.device,
            batch_size=args.batch_size,
            data_root=args.data_root,
            on_attack=lambda name, n: say(f"{name}: running on {n} test images ..."),
            on_record=_print_record,
        )
        attacked = [record for record in records if record["attack"] != "clean"]
        # worst_case is None only for records without masks; these fresh records all have them
        if len(attacked) > 1 and (worst := worst_case(attacked)) is not None:
            print(
                f"{'worst-case':<11} eps={attacked[0]['eps']:.4f}  accuracy={100 * worst:6.2f}%  "
                f"(robust only where {', '.join(r['attack'] for r in attacked)} all failed)  n={attacked[0]['n']}"
            )
    return _sanity(args) if args.sanity else 0


def _image_count(args: argparse.Namespace) -> int | None:
    """RUN_DIR a run directory, --batch-size >= 1 and --n >= 1, capped at the run's test set
    with one note; checked before the model loads (so the attacks and the sanity checks do
    not note a cap twice)."""
    from sparta.config import TrainConfig
    from sparta.data import split_size
    from sparta.progress import capped

    config = TrainConfig.load(args.run_dir)
    if args.batch_size < 1:
        raise SpartaError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.n is None:
        return None
    if args.n < 1:
        raise SpartaError(f"--n must be >= 1, got {args.n}")
    size = split_size(config.dataset, "test", args.data_root or config.data_root)
    return capped(args.n, size, "--n", f"the {size} test images of {config.dataset}")


def _print_record(record: EvalRecord) -> None:
    """One line per attack, printed as the attack ends."""
    low, high = record["ci95"]
    print(
        f"{record['attack']:<11} eps={record['eps']:.4f}  accuracy={100 * record['accuracy']:6.2f}%  "
        f"(95% CI {100 * low:.2f}-{100 * high:.2f})  n={record['n']}  ({record['seconds']:.1f}s)",
        flush=True,
    )


def _sanity(args: argparse.Namespace) -> int:
    from sparta.sanity import SanitySettings, check_run

    results = check_run(
        args.run_dir,
        n=args.n,
        eps=args.eps,
        device=args.device,
        data_root=args.data_root,
        settings=SanitySettings(batch_size=args.batch_size),
    )
    for result in results:
        print(f"{'PASS' if result.passed else 'FAIL'}  {result.name:<13} {result.detail}")
    return 0 if all(result.passed for result in results) else 1
