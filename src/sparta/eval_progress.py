"""The attack in progress, saved after each batch, so that a killed evaluation resumes.

AutoAttack on 10,000 CIFAR-10 images runs for hours, and eval.json only takes an attack's
record when it ends. After each batch the evaluation writes RUN_DIR/eval-progress.json:
what it is measuring (attack, settings, eps, n, batch size, seed and a digest of the model
file), the per-example results so far and the RNG states. A rerun that measures the same
thing continues after the last saved batch, with the RNG where it was, so its record equals
an unbroken run's; anything else (another attack, a retrained model) starts afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparta.progress import warn
from sparta.runfiles import atomic_write_text


def file_digest(path: Path) -> str:
    """SHA-256 of a file: names the model an evaluation's progress belongs to."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _rng_states() -> dict[str, str]:
    states = {"cpu": torch.get_rng_state().numpy().tobytes().hex()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state().numpy().tobytes().hex()
    return states


def _set_rng_states(states: dict[str, str]) -> None:
    torch.set_rng_state(torch.from_numpy(np.frombuffer(bytes.fromhex(states["cpu"]), dtype=np.uint8).copy()))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.from_numpy(np.frombuffer(bytes.fromhex(states["cuda"]), dtype=np.uint8).copy()))


class AttackProgress:
    """One attack's per-example results as they grow batch by batch, kept in a file."""

    def __init__(self, path: Path, measures: dict[str, Any]) -> None:
        self.path = path
        self.measures = json.loads(json.dumps(measures))  # as it reads back from the file
        self.seconds_before = 0.0  # time the attack ran before the rerun that resumed it

    def resume(self) -> list[torch.Tensor]:
        """The masks of the batches already done (the RNG set to where they left it), or []
        when the file measures something else, or is missing or unreadable."""
        saved = self._read()
        if saved is None or saved.get("measures") != self.measures:
            return []
        _set_rng_states(saved["rng"])
        self.seconds_before = float(saved["seconds"])
        return [torch.tensor(batch, dtype=torch.bool) for batch in saved["masks"]]

    def save(self, masks: list[torch.Tensor], seconds: float) -> None:
        """Write the batches done so far (atomically), with the RNG states after them."""
        document = {
            "measures": self.measures,
            "masks": [mask.tolist() for mask in masks],
            "seconds": self.seconds_before + seconds,
            "rng": _rng_states(),
        }
        atomic_write_text(self.path, json.dumps(document))

    def _read(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            saved = json.loads(self.path.read_text())
            if isinstance(saved, dict) and {"measures", "masks", "seconds", "rng"} <= saved.keys():
                return saved
        except (OSError, ValueError):
            pass
        warn(f"{self.path} is unreadable; the attack starts from its first batch")
        return None


@dataclasses.dataclass(frozen=True)
class ProgressFile:
    """Where a run's evaluation keeps the attack in progress, and which model it measures."""

    path: Path
    model_digest: str

    def attack(self, measures: dict[str, Any]) -> AttackProgress:
        """The progress of one attack, named by everything that decides its result."""
        return AttackProgress(self.path, {**measures, "model": self.model_digest})

    def clear(self) -> None:
        """The attack's record is in eval.json: its progress is no longer needed."""
        self.path.unlink(missing_ok=True)
