"""Feedback on long work: a bar on a terminal, and messages through `logging`/`warnings`.

The library never prints. Progress lines (one per epoch, one per attack) go to the
"sparta" logger at INFO, problems worth a look (a run that ended at chance) are
`SpartaWarning`s; the CLI shows both on stderr (`show_messages`), and a Python caller
decides with the usual `logging.basicConfig` / `warnings` filters.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterable
from typing import TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG = logging.getLogger("sparta")


class SpartaWarning(UserWarning):
    """A result that ran but deserves a look (for example a model that never learned)."""


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> tqdm:
    """Iterate `items` behind a bar; `.set_postfix(...)` shows running figures on it.
    Silent when stderr is not a terminal (logs, CI)."""
    return tqdm(items, total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False, dynamic_ncols=True)


def say(line: str) -> None:
    """One line of progress (an epoch's figures, an attack starting), to the "sparta" logger."""
    LOG.info(line)


def capped(count: int, available: int, flag: str, what: str) -> int:
    """A count of images the user gave, at most the `available` ones; one note (a progress
    line) when it asked for more, naming the flag and `what` it counts (e.g. "the 450 test
    images of digits")."""
    if count <= available:
        return count
    say(f"note: {flag} {count} is more than {what}; using {available}")
    return available


def warn(message: str) -> None:
    """A `SpartaWarning` attributed to the caller of the library function that found it."""
    warnings.warn(message, SpartaWarning, stacklevel=3)


class _StderrNow(logging.StreamHandler):
    """A handler on whatever sys.stderr is when a record arrives (tests swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def show_messages() -> None:
    """The CLI's choice: progress lines as they are, warnings as `sparta: warning: ...`,
    both on stderr, each once."""
    if not any(isinstance(handler, _StderrNow) for handler in LOG.handlers):
        handler = _StderrNow()
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, SpartaWarning):
            print(f"sparta: warning: {message}", file=sys.stderr, flush=True)
        else:
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = show
    warnings.simplefilter("always", SpartaWarning)
