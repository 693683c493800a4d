"""Reading a run directory's JSON files, in one place for the grid, the tables and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparta.errors import SpartaError

METRICS_FILE = "metrics.jsonl"  # one JSON object per finished epoch
EVAL_FILE = "eval.json"  # {"results": [records], ...}


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run ([] when it has none yet)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise SpartaError(f"{path} is not valid JSON lines: {err}") from None


def read_eval_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The evaluation records of a run ([] when it has not been evaluated)."""
    path = Path(run_dir) / EVAL_FILE
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text())["results"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise SpartaError(f"{path} is not an eval.json with a 'results' list ({type(err).__name__}: {err})"
                          ) from None
