"""Who may write a run directory at once: one trainer, or any number of evaluators.

Locks are the system's advisory `flock`, dropped with their process, so a killed run never
leaves one held. A run directory has three:

- `.lock`: training holds it exclusively for the whole run; an evaluation holds it shared,
  so evaluations of one run proceed side by side but never beside its training (the
  model would change under the attack).
- `.eval.lock`: held for the moment eval.json is re-read, merged and rewritten, so two
  evaluations that end together both land (`runfiles.update_eval`).
- `.progress.lock`: the evaluation that holds it keeps eval-progress.json (what a killed
  evaluation resumes from); a second evaluation at the same time runs without one.

Without fcntl (Windows) there are no locks. A process may take a lock it already holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sparta.errors import SpartaError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

RUN_LOCK = ".lock"
EVAL_LOCK = ".eval.lock"
PROGRESS_LOCK = ".progress.lock"
LOCK_FILES = (RUN_LOCK, EVAL_LOCK, PROGRESS_LOCK)

_HELD: set[tuple[Path, str]] = set()  # (run directory, lock file) this process holds


class Busy(Exception):
    """Another process holds the lock (raised only when not waiting)."""


@contextlib.contextmanager
def _flock(run_dir: Path, name: str, shared: bool = False, wait: bool = True) -> Iterator[None]:
    """Hold run_dir/name; raises Busy when `wait` is False and another process holds it."""
    key = (Path(run_dir).resolve(), name)
    if key in _HELD or fcntl is None:
        yield
        return
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        handle = open(Path(run_dir) / name, "a")
    except OSError as err:
        raise SpartaError(f"cannot write the run directory {run_dir}: {err.strerror or err}") from None
    with handle:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(handle, mode | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            raise Busy from None
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)


@contextlib.contextmanager
def _or_refuse(run_dir: Path, shared: bool, wait: bool, refusal: str) -> Iterator[None]:
    """Hold the run's `.lock`; when another process holds it (and not waiting), `refusal`."""
    try:
        with _flock(run_dir, RUN_LOCK, shared=shared, wait=wait):
            yield
    except Busy:
        raise SpartaError(refusal) from None


def run_lock(run_dir: Path, wait: bool = False) -> contextlib.AbstractContextManager[None]:
    """One writer per run directory (training). `wait`: block until the other process ends
    (grid cells that several --shard processes reach), else fail at once."""
    busy = f"another sparta process is writing or evaluating {run_dir}; wait for it to end"
    return _or_refuse(run_dir, shared=False, wait=wait, refusal=busy)


def reading_run(run_dir: Path, wait: bool = False) -> contextlib.AbstractContextManager[None]:
    """An evaluation of the run: beside other evaluations, never beside its training.
    `wait`: block until the trainer ends (a grid's cell), else fail at once."""
    busy = f"{run_dir} is being trained by another sparta process; evaluate it when that ends"
    return _or_refuse(run_dir, shared=True, wait=wait, refusal=busy)


@contextlib.contextmanager
def eval_file_lock(run_dir: Path) -> Iterator[None]:
    """Held while eval.json is re-read, merged and written (waits for the other writer)."""
    with _flock(run_dir, EVAL_LOCK):
        yield


@contextlib.contextmanager
def progress_lock(run_dir: Path) -> Iterator[bool]:
    """Yields whether this process keeps the run's eval-progress.json (False: another
    evaluation of the run keeps it now, so this one runs without saving its progress)."""
    try:
        with _flock(run_dir, PROGRESS_LOCK, wait=False):
            yield True
    except Busy:
        yield False
