"""A progress bar on long work, silent when stderr is not a terminal (logs, CI)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> tqdm:
    """Iterate `items` behind a bar; `.set_postfix(...)` shows running figures on it."""
    return tqdm(items, total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False,
                dynamic_ncols=True)


def say(line: str) -> None:
    """One line of progress on stderr, also where no bar is shown (logs, CI, background runs)."""
    print(line, file=sys.stderr, flush=True)
