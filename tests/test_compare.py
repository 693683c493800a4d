"""sparta compare: a resumable grid of runs and its table of mean ± 95% CI over seeds."""

import csv
import io
import json
import re
import sys

import pytest
import torch
from safetensors.torch import load_file

from sparta import SpartaError, evaluation
from sparta.cli import main
from sparta.config import TrainConfig
from sparta.experiments import EvalPlan, grid, grid_cells, run_grid, write_table
from sparta.experiments.table import collect

TINY = dict(dataset="digits", subset=32, epochs=1, batch_size=16, method="standard", eval_every=0)
PLAN = EvalPlan(("clean", "pgd"), n=32)


def flags(**settings) -> list[str]:
    """Settings as the CLI's flags: batch_size=16 -> ["--batch-size", "16"]."""
    return [part for key, value in settings.items() for part in (f"--{key.replace('_', '-')}", str(value))]


TINY_FLAGS = flags(**TINY)  # the CLI tests train the cells that finished_grid trains


def count_train_calls(monkeypatch):
    """Wrap grid.train to record its calls (config.out, resume) and still train."""
    calls = []
    real = grid.train

    def counting(config, resume=False):
        calls.append((config.out, resume))
        return real(config, resume=resume)

    monkeypatch.setattr(grid, "train", counting)
    return calls


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    cells = grid_cells(TrainConfig(**TINY), out, ["relu", "swish"], seeds=[0, 1])
    run_grid(cells, PLAN, log=lambda line: None)
    return out, cells


def test_a_grid_flushes_each_log_line_as_it_goes(finished_grid, monkeypatch):
    """Grids run for hours into a log file: a line left in the buffer is lost with a kill."""

    class Stream(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.flushed: list[str] = []

        def flush(self) -> None:
            self.flushed.append(self.getvalue())

    _, cells = finished_grid
    stream = Stream()
    monkeypatch.setattr(sys, "stdout", stream)
    run_grid(cells, PLAN)
    first_flushes = [text for text in stream.flushed if text.count("\n") == 1]
    assert first_flushes and first_flushes[0].startswith(f"[1/{len(cells)}] {cells[0].name}: done, skipped")


def test_grid_gives_one_row_per_activation_with_two_seeds(finished_grid):
    out, cells = finished_grid
    assert [c.name for c in cells] == [  # seed by seed: a grid stopped part-way leaves paired seeds
        "smallcnn-relu-standard-seed0",
        "smallcnn-swish-standard-seed0",
        "smallcnn-relu-standard-seed1",
        "smallcnn-swish-standard-seed1",
    ]
    markdown = write_table(cells, PLAN, out, "test")
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [r["act"] for r in rows] == ["relu", "swish"] and all(r["n_seeds"] == "2" for r in rows)
    assert markdown == (out / "table.md").read_text() and "| smallcnn | relu | standard |" in markdown
    for row, cell in zip(rows, cells[:2]):  # seed 0's cell of each activation
        accs = [json.loads((c.run_dir / "eval.json").read_text())["results"] for c in cells if c.labels == cell.labels]
        clean = [next(r["accuracy"] for r in records if r["attack"] == "clean") for records in accs]
        assert float(row["clean_mean"]) == pytest.approx(100 * sum(clean) / 2)
        assert float(row["train_s_mean"]) > 0 and int(row["params"]) == int(row["trainable_params"]) > 0


def test_rerun_does_not_retrain_and_only_adds_missing_attacks(finished_grid, monkeypatch):
    _out, cells = finished_grid
    calls = count_train_calls(monkeypatch)
    mtimes = [(c.run_dir / "model.safetensors").stat().st_mtime_ns for c in cells]
    lines = []
    run_grid(cells, PLAN, log=lines.append)
    assert calls == [] and all(line.endswith("done, skipped") for line in lines)
    run_grid(cells[:1], EvalPlan(("clean", "pgd", "fgsm"), n=16), log=lines.append)
    assert calls == [] and lines[-1].endswith("evaluated clean,pgd,fgsm")  # n=16 is new for every attack
    assert [(c.run_dir / "model.safetensors").stat().st_mtime_ns for c in cells] == mtimes


def test_changed_settings_in_the_same_directory_are_refused(finished_grid):
    out, _ = finished_grid
    cells = grid_cells(TrainConfig(**{**TINY, "epochs": 2}), out, ["relu"], seeds=[0])
    with pytest.raises(SpartaError, match="holds a run with other settings \\(epochs\\)"):
        run_grid(cells, PLAN, log=lambda line: None)


def test_killed_cell_resumes_and_unstarted_cell_restarts(tmp_path, monkeypatch):
    import sparta.training.loop as loop

    cells = grid_cells(TrainConfig(**{**TINY, "epochs": 2}), tmp_path, ["relu"], seeds=[0, 1])
    # cell 0: killed right after its first epoch's checkpoint
    real_save = loop.save_state

    def save_then_die(run_dir, model, optimizer, epoch, *rest):
        real_save(run_dir, model, optimizer, epoch, *rest)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_grid(cells[:1], PLAN, log=lambda line: None)
    monkeypatch.setattr(loop, "save_state", real_save)
    assert grid.epochs_done(cells[0].run_dir) == 1
    # cell 1: killed before its first checkpoint (config.json and a stray metrics line only)
    cells[1].run_dir.mkdir()
    (cells[1].run_dir / "config.json").write_text(cells[1].config.to_json())
    (cells[1].run_dir / "metrics.jsonl").write_text('{"epoch": 0, "seconds": 1e9}\n')

    calls = count_train_calls(monkeypatch)
    lines = []
    run_grid(cells, PLAN, log=lines.append)
    assert calls == [(cells[0].config.out, True), (cells[1].config.out, False)]
    assert "resumed" in lines[0] and "restarted and trained" in lines[1]
    for cell in cells:
        epochs = [json.loads(line)["epoch"] for line in (cell.run_dir / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [0, 1] and grid.epochs_done(cell.run_dir) == 2
    assert [row.metrics["train s"].mean < 1e6 for row in collect(cells, PLAN)] == [True]


def test_compare_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "cmp"
    pgd = flags(**TINY | dict(method="pgd", attack_steps=1))
    argv = ["compare", "--acts", "relu,sparta", "--seeds", "1", "--seed", "3", *pgd, "--act-option", "hidden=2"]
    argv += ["--attacks", "clean,pgd", "--n", "32", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "smallcnn-relu-pgd-seed3: pgd running on 32 test images" in captured.err  # a long attack is seen
    assert "| smallcnn | sparta | pgd |" in printed
    sparta_clean = next(line for line in printed.splitlines() if "| sparta | pgd |" in line).split("|")[4]
    assert re.fullmatch(r" \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\] ", sparta_clean)  # one seed: n's interval
    rows = {r["act"]: r for r in csv.DictReader((out / "table.csv").open())}
    assert set(rows) == {"relu", "sparta"} and rows["sparta"]["clean_ci95"] == ""
    assert int(rows["sparta"]["params"]) > int(rows["relu"]["params"])
    sparta_dir, relu_dir = out / "smallcnn-sparta-pgd-seed3", out / "smallcnn-relu-pgd-seed3"
    assert json.loads((sparta_dir / "config.json").read_text())["act_options"] == {"hidden": 2}
    assert json.loads((relu_dir / "config.json").read_text())["act_options"] == {}
    function = load_file(sparta_dir / "sparta.safetensors")
    assert {k.split(".")[0] for k in function} == {"block1", "block2", "head"}  # share=stage
    assert not (relu_dir / "sparta.safetensors").exists()
    assert main(argv) == 0 and capsys.readouterr().out.count("done, skipped") == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--acts", "relu,rellu"], "unknown activation 'rellu'"),
        (["--acts", "relu,relu"], "listed twice"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--attacks", "clean,pgdd"], "unknown attack 'pgdd'"),
        (["--models", "vgg"], "unknown model 'vgg'"),
    ],
)
def test_compare_errors_are_one_line(tmp_path, capsys, extra, message):
    assert main(["compare", "--dataset", "digits", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparta: error:") and message in err and "\n" not in err


def test_table_names_seeds_whose_training_stayed_at_chance(tmp_path):
    cells = grid_cells(TrainConfig(**TINY), tmp_path, ["relu"], seeds=[0, 1])
    plan = EvalPlan(("clean",), n=32)
    for cell, train_acc in zip(cells, [0.62, 0.103]):
        cell.run_dir.mkdir(parents=True)
        (cell.run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "train_acc": train_acc, "seconds": 1.0}))
        record = {"attack": "clean", "eps": 0.0, "n": 32, "accuracy": 0.5}
        (cell.run_dir / "eval.json").write_text(json.dumps({"results": [record]}))
    (row,) = collect(cells, plan)
    assert row.seeds == [0, 1] and row.seeds_at_chance == [1]
    markdown = write_table(cells, plan, tmp_path, "test")
    assert "| 2 (seed 1 at chance) |" in markdown
    (csv_row,) = csv.DictReader((tmp_path / "table.csv").open())
    assert csv_row["seeds_at_chance"] == "1" and csv_row["n_seeds"] == "2"


def test_paired_differences_are_per_seed_against_the_first_activation(finished_grid):
    from sparta.experiments.table import _cell_values, paired_markdown

    _, cells = finished_grid
    text = paired_markdown(collect(cells, PLAN), "relu")
    assert "against relu" in text and "| swish |" in text and "| relu |" not in text
    by = {(c.labels["act"], c.config.seed): _cell_values(c, PLAN)["clean"] for c in cells}
    differences = [100 * (by[("swish", s)] - by[("relu", s)]) for s in (0, 1)]
    assert all(f"{d:+.2f}" in text for d in differences)


def test_table_only_tabulates_finished_cells_and_trains_nothing(finished_grid, monkeypatch, capsys):
    out, _ = finished_grid
    calls = count_train_calls(monkeypatch)
    argv = ["compare", "--acts", "relu,swish", "--seeds", "3", *TINY_FLAGS, "--attacks", "clean,pgd", "--n", "32"]
    argv += ["--out", str(out), "--table-only"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert not calls
    assert "left out of the table: smallcnn-relu-standard-seed2, smallcnn-swish-standard-seed2" in captured.err
    assert "Paired differences against relu" in captured.out
    assert captured.out.count("| 312,202 | 312,202 | 2") == 2  # two finished seeds in each row


def test_table_only_and_shard_are_refused_together(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--out", "unused", "--table-only", "--shard", "0/2"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_accuracy_cells_show_each_seed_and_never_leave_0_to_100():
    from scipy.stats import binomtest

    from sparta.experiments.table import Row, accuracy_text
    from sparta.stats import mean_ci

    values = [0.0, 0.3438]  # a 2-seed spread: the t interval reaches far below 0
    row = Row({"act": "x"}, {"pgd": mean_ci(values)}, 1, 1, [0, 1], per_seed={"pgd": values})
    text = accuracy_text(row, "pgd")
    assert text == "17.19 [0.00, 100.00] (0.00, 34.38)"
    steady = [0.74, 0.75, 0.76]
    row = Row({"act": "x"}, {"pgd": mean_ci(steady)}, 1, 1, [0, 1, 2], per_seed={"pgd": steady})
    assert accuracy_text(row, "pgd") == f"{mean_ci(steady).format(100.0, 2)} (74.00, 75.00, 76.00)"
    # one seed: no spread over seeds, but the test-set sample has its binomial interval
    one = Row({"act": "x"}, {"pgd": mean_ci([0.9])}, 1, 1, [0], per_seed={"pgd": [0.9]}, test_images=200)
    exact = binomtest(180, 200).proportion_ci(0.95, "exact")  # Clopper-Pearson, from scipy itself
    assert accuracy_text(one, "pgd") == f"90.00 [{100 * exact.low:.2f}, {100 * exact.high:.2f}]"


def test_compare_runs_the_strongest_literature_activations(tmp_path, capsys):
    """PSSiLU and parametric Softplus train, evaluate and tabulate beside ReLU and Sparta."""
    out = tmp_path / "lit"
    pgd = flags(**TINY | dict(method="pgd", attack_steps=1))
    argv = ["compare", "--acts", "relu,pssilu,psoftplus,sparta", "--seeds", "1", *pgd, "--act-option", "hidden=2"]
    argv += ["--attacks", "clean,pgd", "--n", "32", "--out", str(out)]
    assert main(argv) == 0
    rows = {r["act"]: r for r in csv.DictReader((out / "table.csv").open())}
    assert set(rows) == {"relu", "pssilu", "psoftplus", "sparta"}
    # one alpha per site (plus PSSiLU's beta) on top of ReLU's weights
    sites = int(rows["psoftplus"]["params"]) - int(rows["relu"]["params"])
    assert sites >= 3 and int(rows["pssilu"]["params"]) - int(rows["relu"]["params"]) == 2 * sites
    for act in ("pssilu", "psoftplus"):
        assert 0 <= float(rows[act]["pgd-20_mean"]) <= float(rows[act]["clean_mean"]) <= 100


def test_worst_case_column_counts_an_example_robust_only_if_every_attack_failed(tmp_path):
    """AutoAttack's way of counting, over the table's attacks, from each record's per-example mask."""
    out = tmp_path / "worst"
    argv = ["compare", "--acts", "relu", "--seeds", "2", *TINY_FLAGS, "--eps", "0.05", "--attacks", "clean,fgsm,pgd"]
    argv += ["--n", "48", "--out", str(out)]
    assert main(argv) == 0
    row = next(csv.DictReader((out / "table.csv").open()))
    worst = float(row["worst-case_mean"])
    assert worst <= min(float(row["fgsm_mean"]), float(row["pgd-20_mean"])) + 1e-9
    for seed in (0, 1):
        records = json.loads((out / f"smallcnn-relu-standard-seed{seed}" / "eval.json").read_text())["results"]
        masks = {r["attack"]: evaluation.unpack_mask(r["correct_mask"], r["n"]) for r in records}
        assert all(len(m) == 48 for m in masks.values())
        assert {r["attack"]: r["correct"] for r in records} == {a: int(m.sum()) for a, m in masks.items()}


def test_worst_case_uses_the_common_first_images():
    import numpy as np

    def record(bits):
        mask = torch.tensor(bits, dtype=torch.bool)
        return {"n": len(bits), "correct_mask": evaluation.pack_mask(mask)}

    assert evaluation.worst_case([record([1, 1, 0, 1]), record([1, 0, 1, 1, 0, 0, 1, 1, 1])]) == 0.5
    assert evaluation.worst_case([record([1, 1]), {"n": 2}]) is None
    assert np.array_equal(evaluation.unpack_mask(evaluation.pack_mask(torch.tensor([True] * 9)), 9), [True] * 9)


def test_a_finished_cell_without_its_weights_is_done_and_never_retrained(finished_grid, monkeypatch, tmp_path):
    """Committed results keep config, metrics and eval.json but not the weights: a rerun reads them."""
    import shutil

    out, _ = finished_grid
    shutil.copytree(out, tmp_path / "copy")
    cell = grid_cells(TrainConfig(**TINY), tmp_path / "copy", ["relu"], seeds=[0])[0]
    kept = (cell.run_dir / "eval.json").read_text()
    for name in ("model.safetensors", "checkpoint.safetensors"):
        (cell.run_dir / name).unlink(missing_ok=True)
    calls = count_train_calls(monkeypatch)
    assert grid.run_cell(cell, PLAN) == "done, skipped" and not calls
    wider = EvalPlan((*PLAN.attacks, "fgsm"), n=PLAN.n)
    with pytest.raises(SpartaError, match="has evaluation results but no model to run fgsm on"):
        grid.run_cell(cell, wider)
    assert (cell.run_dir / "eval.json").read_text() == kept and not calls
