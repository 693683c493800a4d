"""A progress bar on long work, silent when stderr is not a terminal (logs, CI)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    return iter(tqdm(items, total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False,
                     dynamic_ncols=True))
