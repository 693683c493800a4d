"""sparta models: the robust models that ship with sparta, their accuracy and how they were made.

Load one in Python with `model, record = sparta.load_pretrained(NAME)`.
"""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "list the pretrained robust models (clean, PGD-20, CW, AutoAttack accuracy)"
COLUMNS = ("clean", "pgd", "cw", "autoattack")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The models flags: --commands."""
    parser.add_argument("--commands", action="store_true", help="also print the command that trained each")


def run(args: argparse.Namespace) -> int:
    """Print a table of the shipped pretrained models and their recorded accuracies (and commands)."""
    from sparta.pretrained import find_accuracy, pretrained_names, pretrained_record

    names = pretrained_names()
    if not names:
        print("no pretrained models are shipped in this version")
        return 0
    records = {name: pretrained_record(name) for name in names}
    print("| name | eps | " + " | ".join(f"{c} (%)" for c in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, record in records.items():
        cells = []
        for attack in COLUMNS:
            found = find_accuracy(record, attack)
            cells.append("-" if found is None else f"{100 * found['accuracy']:.2f} (n={found['n']})")
        print(f"| {name} | {record['config']['eps']:g} | " + " | ".join(cells) + " |")
    if args.commands:
        for name, record in records.items():
            print(f"\n{name}:\n  {record['command']}")
    return 0
