"""Processes that share a run directory: evaluations side by side keep each other's records,
an evaluation never runs beside the run's training, and eval.json is checked before work."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sparta.errors import SpartaError
from sparta.evaluation import evaluate_run
from sparta.locks import reading_run, run_lock
from sparta.runfiles import read_eval_records

HOLD = (
    "import sys, time; from pathlib import Path; import sparta.locks as locks\n"
    "with getattr(locks, sys.argv[2])(Path(sys.argv[1])):\n"
    "    print('held', flush=True); time.sleep(float(sys.argv[3]))"
)


@pytest.fixture()
def run(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    (copy / "eval.json").unlink(missing_ok=True)
    return copy


def hold(run_dir: Path, lock: str, seconds: float = 60) -> subprocess.Popen:
    """Another process holding `lock` ("run_lock": training, "reading_run": an evaluation)."""
    argv = [sys.executable, "-c", HOLD, str(run_dir), lock, str(seconds)]
    holder = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_two_evaluations_at_once_both_land_in_eval_json(run):
    slow = subprocess.Popen(
        [sys.executable, "-m", "sparta", "eval", str(run), "--attacks", "pgd", "--n", "200", "--batch-size", "8"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    started = [slow.stderr.readline()]
    while started[-1] and "pgd: running" not in started[-1]:  # past any warning printed first
        started.append(slow.stderr.readline())
    assert "pgd: running" in started[-1], started  # the slow one has loaded the run and started
    fast = evaluate_run(run, ["fgsm"], n=32)  # starts and ends while the slow one attacks
    assert slow.wait(timeout=300) == 0, slow.stderr.read()
    records = {(r["attack"], r["n"]): r for r in read_eval_records(run)}
    assert set(records) == {("pgd", 200), ("fgsm", 32)}
    assert records["fgsm", 32]["accuracy"] == fast[0]["accuracy"]


def test_an_evaluation_is_refused_while_the_run_trains(run):
    holder = hold(run, "run_lock")
    try:
        with pytest.raises(SpartaError, match="is being trained by another sparta process"):
            evaluate_run(run, ["clean"], n=8, on_attack=lambda *_: pytest.fail("an attack started"))
    finally:
        holder.kill()
        holder.wait()
    assert evaluate_run(run, ["clean"], n=8)[0]["n"] == 8  # a killed trainer leaves no lock behind


def test_training_is_refused_while_the_run_is_evaluated(run):
    from sparta.config import TrainConfig
    from sparta.training.loop import train

    holder = hold(run, "reading_run")
    try:
        with pytest.raises(SpartaError, match="another sparta process is writing or evaluating"):
            train(TrainConfig.load(run), resume=True)
        with reading_run(run):  # evaluations share the run
            pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(run):
        with reading_run(run):  # a process that trains may evaluate its own run (a grid cell)
            pass


def test_a_grid_passes_or_evaluates_a_cell_that_another_process_evaluates(run):
    """A grid takes a cell alone only to train it: a finished cell is passed and a trained
    one evaluated while another process evaluates them (that process holds 60 s)."""
    import time

    from sparta.config import TrainConfig
    from sparta.experiments.grid import Cell, EvalPlan, run_cell

    cell = Cell("cell", TrainConfig.load(run))
    evaluate_run(run, ["clean"], n=32)
    holder = hold(run, "reading_run")
    try:
        started = time.monotonic()
        assert run_cell(cell, EvalPlan(("clean",), 32)) == "done, skipped"
        assert run_cell(cell, EvalPlan(("clean", "fgsm"), 32)) == "evaluated fgsm"
        assert time.monotonic() - started < 30  # not waiting for the other process to end
    finally:
        holder.kill()
        holder.wait()
    assert {(r["attack"], r["n"]) for r in read_eval_records(run)} == {("clean", 32), ("fgsm", 32)}


def test_a_grid_evaluates_a_trained_cell_after_the_process_that_holds_it_alone(run):
    """Where another process holds the cell alone (a grid evaluating the cell it trained),
    a grid waits for it rather than failing."""
    import time

    from sparta.config import TrainConfig
    from sparta.experiments.grid import Cell, EvalPlan, run_cell

    holder = hold(run, "run_lock", seconds=3)
    try:
        started = time.monotonic()
        assert run_cell(Cell("cell", TrainConfig.load(run)), EvalPlan(("clean",), 32)) == "evaluated clean"
        assert time.monotonic() - started >= 2
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("damage", ["directory", "read-only"])
def test_an_unwritable_eval_json_is_refused_before_any_attack(run, damage):
    path = run / "eval.json"
    if damage == "directory":
        path.mkdir()
    else:
        path.write_text(json.dumps({"results": []}))
        path.chmod(0o444)
    with pytest.raises(SpartaError, match=r"eval\.json is (a directory|read-only)"):
        evaluate_run(run, ["pgd"], n=8, on_attack=lambda *_: pytest.fail("an attack started"))
    assert path.is_dir() if damage == "directory" else path.read_text() == json.dumps({"results": []})
