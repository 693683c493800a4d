"""The run directory: its file names, atomic writes, and reading and writing its JSON files."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

from sparta.errors import SpartaError
from sparta.locks import eval_file_lock

# The run directory's files (docs/design.md section 7), named here and nowhere else.
CONFIG_FILE = "config.json"  # the TrainConfig that made the run
METRICS_FILE = "metrics.jsonl"  # one JSON object per finished epoch
MODEL_FILE = "model.safetensors"  # the model alone, with its build spec (sparta.checkpoint)
STATE_FILE = "checkpoint.safetensors"  # model + optimizer + RNG: what --resume continues from
SPARTA_FILE = "sparta.safetensors"  # the Sparta function, for --sparta-from RUN_DIR
EVAL_FILE = "eval.json"  # {"results": [records], "sanity": ..., ...}
EVAL_PROGRESS_FILE = "eval-progress.json"  # the attack in progress, batch by batch (sparta.eval_progress)
RUN_FILES = (CONFIG_FILE, METRICS_FILE, MODEL_FILE, STATE_FILE, EVAL_FILE, SPARTA_FILE, EVAL_PROGRESS_FILE)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run ([] when it has none yet). A last line cut short (a
    write killed midway) is dropped: the epoch it describes is redone on resume."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise SpartaError(f"{path} line {number} is not valid JSON: {err}") from None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise SpartaError(f"{path} line {number} is not an epoch record (a JSON object with an 'epoch')")
        records.append(record)
    return records


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Any) -> None:
    """Call `write(tmp_path)`, fsync, then rename over `path`: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_eval(run_dir: str | Path, document: dict[str, Any]) -> None:
    """Replace the run's eval.json with `document`, atomically (`read_eval` reads it back)."""
    atomic_write_text(Path(run_dir) / EVAL_FILE, json.dumps(document, indent=2))


def update_eval(run_dir: str | Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Re-read eval.json, apply `change` and write the result, all under the run's eval.json
    lock: evaluations of one run that end together each keep the other's records."""
    with eval_file_lock(Path(run_dir)):
        document = change(read_eval(run_dir))
        write_eval(run_dir, document)
    return document


def check_eval_file(run_dir: str | Path) -> None:
    """eval.json is well-formed (`read_eval`) and can be (re)written: checked before any
    attack runs, so that a refusal comes before the work, and names eval.json rather than
    a temporary file."""
    read_eval(run_dir)
    path = Path(run_dir) / EVAL_FILE
    if path.is_dir():
        raise SpartaError(f"{path} is a directory, not a file; move it away to evaluate {run_dir}")
    if path.exists() and not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise SpartaError(f"{path} is read-only; make it writable (chmod u+w) to add records to it")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{EVAL_FILE}.", dir=run_dir)
    except OSError as err:
        raise SpartaError(f"cannot write {path}: {err.strerror or err}") from None
    os.close(fd)
    os.unlink(probe)


class _RecordCore(TypedDict):
    """What every eval.json record has (`RECORD_KEYS`)."""

    attack: str  # "clean" or an attack's canonical name
    eps: float
    n: int
    accuracy: float  # correct / n


class EvalRecord(_RecordCore, total=False):
    """One entry of eval.json's "results": `attack` at L-inf radius `eps` (0.0 for clean) on
    the first `n` test images, and the `accuracy` measured. Records written before intervals
    and masks were kept lack `ci95`, `correct` and `correct_mask`; clean has no `settings`."""

    ci95: list[float]  # 95% Clopper-Pearson interval of the accuracy
    correct: int
    seconds: float
    correct_mask: str  # per example, correct or not: one bit each, hex (evaluation.pack_mask)
    settings: dict[str, Any]  # the attack's settings (steps, restarts, seed, n_queries)


RECORD_KEYS = ("attack", "eps", "n", "accuracy")  # what every record has (EvalRecord's required keys)
EPS_DIGITS = 8  # eps values that agree to 8 decimals are one eps
RecordKey = tuple[str, float, int]


def eps_key(eps: float) -> float:
    """eps as records are matched by it: rounded to EPS_DIGITS decimals."""
    return round(float(eps), EPS_DIGITS)


def measurement_key(attack: str, eps: float, n: int) -> RecordKey:
    """What a measurement is: (attack, `eps_key(eps)`, n); clean has no eps (0.0)."""
    return attack, 0.0 if attack == "clean" else eps_key(eps), int(n)


def record_key(record: EvalRecord) -> RecordKey:
    """What a record measures (`measurement_key`): eval.json holds one record per key."""
    return measurement_key(record["attack"], record["eps"], record["n"])


def find_record(records: Sequence[EvalRecord], attack: str, eps: float, n: int) -> EvalRecord | None:
    """The record of `attack` at `eps` (any eps for clean) on n images, or None; the
    latest in `records` wins where several share the key."""
    wanted = measurement_key(attack, eps, n)
    return next((record for record in reversed(records) if record_key(record) == wanted), None)


def read_eval(run_dir: str | Path) -> dict[str, Any]:
    """A run's whole eval.json ({} when it has not been evaluated), checked, so that a
    command stops before its attacks run rather than after, when the file is damaged."""
    path = Path(run_dir) / EVAL_FILE
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpartaError(f"{path} is not valid JSON ({err}); move it away to evaluate again") from None
    results = document.get("results", []) if isinstance(document, dict) else None
    if not isinstance(results, list) or not all(
        isinstance(r, dict) and all(k in r for k in RECORD_KEYS) for r in results
    ):
        raise SpartaError(
            f"{path} is not an eval.json (an object whose 'results' lists records with "
            f"{', '.join(RECORD_KEYS)}); move it away to evaluate again"
        )
    return document


def read_eval_records(run_dir: str | Path) -> list[EvalRecord]:
    """The evaluation records of a run ([] when it has not been evaluated), checked by `read_eval`."""
    return list(read_eval(run_dir).get("results", []))
