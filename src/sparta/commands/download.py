"""sparta download NAME: fetch a dataset into its root and check the published checksums."""

from __future__ import annotations

import argparse

NAME = "download"
HELP = "download a dataset and check its checksums"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The download flags: the dataset name and --data-root."""
    parser.add_argument("name")
    parser.add_argument("--data-root", default=None)


def run(args: argparse.Namespace) -> int:
    """Download the dataset, check its checksums and print the files' paths."""
    from sparta.data import download_dataset

    for path in download_dataset(args.name, args.data_root):
        print(path)
    return 0
