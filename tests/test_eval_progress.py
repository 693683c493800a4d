"""A killed evaluation resumes after its last finished batch, with the RNG where it was,
and gives the record an unbroken evaluation gives; progress of anything else is not used."""

import json
import shutil

import pytest
import torch

from sparta import evaluation
from sparta.attacks import create_attack
from sparta.checkpoint import load_checkpoint, save_checkpoint
from sparta.progress import SpartaWarning
from sparta.runfiles import EVAL_PROGRESS_FILE

N, BATCH = 40, 8  # five batches


class Stopped(Exception):
    """Stands for a kill between two batches."""


class Recording:
    """An attack that notes one random draw per batch (what a resumed run must continue
    from) and stops, as a killed process would, after `stop_after` batches."""

    def __init__(self, attack, draws: list, stop_after: int | None):
        self.attack, self.draws, self.stop_after = attack, draws, stop_after

    def perturb(self, model, x, y):
        if len(self.draws) == self.stop_after:
            raise Stopped
        self.draws.append(torch.rand(1).item())
        return self.attack.perturb(model, x, y)


@pytest.fixture()
def runs(trained_run, tmp_path):
    """Two private copies of the session's trained run, without eval results."""
    copies = []
    for name in ("a", "b"):
        shutil.copytree(trained_run, tmp_path / name)
        (tmp_path / name / "eval.json").unlink(missing_ok=True)
        copies.append(tmp_path / name)
    return copies


def pgd(run, monkeypatch, stop_after=None, batch_size=BATCH):
    """evaluate_run with PGD-3 through `Recording`; returns (the pgd record, the draws)."""
    draws: list = []
    monkeypatch.setattr(
        evaluation, "create_attack", lambda *a, **k: Recording(create_attack(*a, **k), draws, stop_after)
    )
    monkeypatch.setitem(evaluation.DEFAULT_OPTIONS, "pgd", {"steps": 3, "restarts": 1})
    records = evaluation.evaluate_run(run, ["pgd"], n=N, eps=0.03, device="cpu", batch_size=batch_size)
    return records[0], draws


def test_a_killed_attack_resumes_after_its_last_batch_with_the_same_record(runs, monkeypatch):
    whole, whole_draws = pgd(runs[0], monkeypatch)
    with pytest.raises(Stopped):
        pgd(runs[1], monkeypatch, stop_after=3)
    saved = json.loads((runs[1] / EVAL_PROGRESS_FILE).read_text())
    assert [len(mask) for mask in saved["masks"]] == [BATCH] * 3
    resumed, draws = pgd(runs[1], monkeypatch)
    assert draws == whole_draws[3:]  # only the last two batches ran, from the same RNG state
    assert (resumed["correct_mask"], resumed["correct"], resumed["n"]) == (
        whole["correct_mask"],
        whole["correct"],
        whole["n"],
    )
    assert not (runs[1] / EVAL_PROGRESS_FILE).exists()
    assert json.loads((runs[1] / "eval.json").read_text())["results"][0]["correct"] == whole["correct"]


def test_progress_of_another_model_or_batch_size_is_not_used(runs, monkeypatch):
    with pytest.raises(Stopped):
        pgd(runs[1], monkeypatch, stop_after=3)
    _, draws = pgd(runs[1], monkeypatch, batch_size=4)  # another batch size: all 10 batches
    assert len(draws) == 10
    with pytest.raises(Stopped):
        pgd(runs[1], monkeypatch, stop_after=3)
    model, meta = load_checkpoint(runs[1])
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    save_checkpoint(model, runs[1], **meta)  # a retrained model: its progress is someone else's
    _, draws = pgd(runs[1], monkeypatch)
    assert len(draws) == N // BATCH


def test_an_unreadable_progress_file_is_said_and_the_attack_starts_over(runs, monkeypatch):
    (runs[1] / EVAL_PROGRESS_FILE).write_text('{"measures": ')
    with pytest.warns(SpartaWarning, match="unreadable; the attack starts from its first batch"):
        _, draws = pgd(runs[1], monkeypatch)
    assert len(draws) == N // BATCH
