"""sparta download NAME: fetch a dataset into its root and check the published checksums."""

from __future__ import annotations

import argparse

NAME = "download"
HELP = "download a dataset and check its checksums"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The download flags: the dataset name and --data-root."""
    from sparta.data import DATASETS, ENV_VAR

    parser.add_argument("name", help=f"the dataset; one of: {', '.join(DATASETS)}")
    parser.add_argument(
        "--data-root",
        default=None,
        help=f"folder for its files (default: ${ENV_VAR}/NAME if set, else the dataset's own default)",
    )


def run(args: argparse.Namespace) -> int:
    """Download the dataset, check its checksums and print the files' paths."""
    from sparta.data import dataset_info, download_dataset

    paths = download_dataset(args.name, args.data_root)
    if not paths and not dataset_info(args.name).downloads:
        print(f"{args.name}: no files to download (it comes with an installed package)")
    for path in paths:
        print(path)
    return 0
