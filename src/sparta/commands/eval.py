"""sparta eval RUN_DIR: accuracy under attacks on the first N test images; writes eval.json."""

from __future__ import annotations

import argparse

from sparta.commands._types import eps_value, name_list

NAME = "eval"
HELP = "evaluate a run directory under attacks; writes eval.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--attacks", type=name_list, default=["clean", "pgd"],
                        help="comma list of clean,fgsm,pgd,cw,autoattack,square (default: clean,pgd)")
    parser.add_argument("--n", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--eps", type=eps_value, default=None, help="default: the run's training eps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--data-root", default=None)


def run(args: argparse.Namespace) -> int:
    from sparta.evaluation import evaluate_run

    records = evaluate_run(args.run_dir, args.attacks, n=args.n, eps=args.eps, device=args.device,
                           batch_size=args.batch_size, data_root=args.data_root)
    for record in records:
        print(f"{record['attack']:<11} eps={record['eps']:.4f}  accuracy={100 * record['accuracy']:6.2f}%  "
              f"n={record['n']}  ({record['seconds']:.1f}s)")
    return 0
