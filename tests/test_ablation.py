"""sparta ablate: one factor at a time, paired verdicts, shards that add up to the whole grid."""

import argparse
import json

import pytest

from sparta import SpartaError
from sparta.cli import main
from sparta.commands._types import level_list, shard_value
from sparta.config import TrainConfig
from sparta.experiments import EvalPlan, grid, grid_cells
from sparta.experiments.ablation import ablation_cells, factor_defaults, verdicts

TINY = dict(dataset="digits", subset=32, epochs=1, batch_size=16, method="standard", eval_every=0)
PLAN = EvalPlan(("clean", "autoattack"), n=50)


def test_factors_are_sparta_options_and_share_with_their_defaults():
    defaults = factor_defaults()
    assert defaults["phi"] == "pooled" and defaults["kernel_size"] == 3 and defaults["share"] == "stage"
    assert "channels" not in defaults and "fused" not in defaults


def test_cells_change_one_setting_each_and_the_baseline_is_the_compare_cell(tmp_path):
    base = TrainConfig(**TINY)
    cells = ablation_cells(base, str(tmp_path), {"phi": ["depthwise"], "share": ["network"]}, seeds=[0, 1])
    compare = grid_cells(base, tmp_path, ["sparta"], seeds=[0, 1])
    baseline = cells[::3]  # seed by seed: baseline, phi, share for seed 0, then seed 1
    assert [c.name for c in baseline] == [c.name for c in compare]
    assert [c.config for c in baseline] == [c.config for c in compare]
    depthwise, network = cells[1], cells[2]
    assert depthwise.name == "smallcnn-sparta_phi-depthwise-standard-seed0"
    assert depthwise.config.act_options == {"phi": "depthwise"} and depthwise.config.share == "stage"
    assert network.config.act_options == {} and network.config.share == "network"
    assert network.labels == {"factor": "share", "value": "network"}


@pytest.mark.parametrize(
    "levels, message",
    [
        ({"kernel": [5]}, "unknown Sparta factor 'kernel'"),
        ({"kernel_size": [3]}, "kernel_size=3 is the baseline's setting"),
        ({"beta0": [1, 1]}, "beta0=1 is listed twice"),
        ({"hidden": []}, "needs at least one level"),
    ],
)
def test_bad_levels_are_refused(tmp_path, levels, message):
    with pytest.raises(SpartaError, match=message):
        ablation_cells(TrainConfig(**TINY), str(tmp_path), levels, seeds=[0])


def test_a_variant_with_bad_option_values_fails_before_training(tmp_path):
    with pytest.raises(SpartaError, match="share mode"):
        ablation_cells(TrainConfig(**TINY), str(tmp_path), {"share": ["everywhere"]}, seeds=[0])


def _fake_results(cells, accuracy_by_name):
    """eval.json files holding the given AutoAttack accuracy for each cell."""
    for cell in cells:
        cell.run_dir.mkdir(parents=True, exist_ok=True)
        record = {"attack": "autoattack", "eps": cell.config.eps, "n": 50, "accuracy": accuracy_by_name[cell.name]}
        (cell.run_dir / "eval.json").write_text(json.dumps({"results": [record]}))


def test_verdict_keeps_the_default_unless_the_paired_gain_is_clear(tmp_path):
    levels = {"beta0": [1.0], "kernel_size": [1]}
    cells = ablation_cells(TrainConfig(**TINY), str(tmp_path), levels, seeds=[0, 1, 2])
    baseline = [0.50, 0.40, 0.60]  # wide spread over seeds
    accuracy = {}
    for cell in cells:
        seed = cell.config.seed
        factor = cell.labels["factor"]
        # beta0=1: 2 points better on every seed (clear when paired, not when unpaired);
        # kernel_size=1: better on average but not on every seed.
        offset = {"default": 0.0, "beta0": 0.02, "kernel_size": [0.10, -0.08, 0.04][seed]}[factor]
        accuracy[cell.name] = baseline[seed] + offset
    _fake_results(cells, accuracy)
    found = {v.factor: v for v in verdicts(cells, PLAN)}
    assert found["beta0"].best == "beta0=1.0" and found["beta0"].winner == "beta0=1.0"
    assert found["beta0"].gain.mean == pytest.approx(0.02) and found["beta0"].gain.low > 0
    assert found["kernel_size"].best == "kernel_size=1" and found["kernel_size"].winner == "kernel_size=3 (default)"


def test_the_baseline_is_the_given_settings_not_the_library_defaults(tmp_path):
    base = TrainConfig(**TINY, act_options={"hidden": 16})
    cells = ablation_cells(base, str(tmp_path), {"hidden": [4]}, seeds=[0, 1])
    assert all(c.config.act_options["hidden"] == (16 if c.labels["factor"] == "default" else 4) for c in cells)
    _fake_results(cells, {c.name: 0.5 for c in cells})
    (verdict,) = verdicts(cells, PLAN)
    assert verdict.winner == "hidden=16 (default)" and list(verdict.level_means) == ["hidden=16 (default)", "hidden=4"]
    with pytest.raises(SpartaError, match="hidden=16 is the baseline's setting"):
        ablation_cells(base, str(tmp_path), {"hidden": [16]}, seeds=[0])


def test_verdict_needs_the_same_seeds_as_the_baseline(tmp_path):
    cells = ablation_cells(TrainConfig(**TINY), str(tmp_path), {"beta0": [1.0]}, seeds=[0, 1])
    _fake_results(cells, {c.name: 0.5 for c in cells})
    cells = cells[:3]  # beta0=1.0 lost its seed 1
    with pytest.raises(SpartaError, match="paired by seed"):
        verdicts(cells, PLAN)


def test_shards_together_run_every_cell_once_then_the_table_reads_them(tmp_path, monkeypatch, capsys):
    trained = []
    real = grid.train
    monkeypatch.setattr(
        grid, "train", lambda config, resume=False: trained.append(config.out) or real(config, resume=resume)
    )
    args = [
        "ablate",
        "--vary",
        "kernel_size=1",
        "--dataset",
        "digits",
        "--subset",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--method",
        "standard",
        "--eval-every",
        "0",
        "--seeds",
        "2",
        "--attacks",
        "clean",
        "--n",
        "40",
        "--out",
        str(tmp_path),
    ]
    assert main([*args, "--shard", "0/2"]) == 0
    assert "shard 0/2 done" in capsys.readouterr().out and not (tmp_path / "ablation.md").exists()
    assert main([*args, "--shard", "1/2"]) == 0
    assert len(trained) == len(set(trained)) == 4
    assert main(args) == 0
    assert len(trained) == 4  # the full run only reads
    table = (tmp_path / "ablation.md").read_text()
    assert "| kernel_size | 1 |" in table and "Verdict by clean accuracy" in table
    assert capsys.readouterr().out.strip().endswith(table.strip())


@pytest.mark.parametrize("text", ["kernel_size", "=1", "beta0=", "beta0=,"])
def test_bad_levels_name_the_expected_form(text):
    with pytest.raises(argparse.ArgumentTypeError, match="FACTOR=V1,V2"):
        level_list(text)


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/3"])
def test_bad_shard_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="I/K"):
        shard_value(text)


def test_levels_are_read_as_json_where_they_parse():
    assert shard_value("1/3") == (1, 3)
    assert level_list("kernel_size=1,5") == ("kernel_size", [1, 5])
    assert level_list("phi=depthwise") == ("phi", ["depthwise"])
    assert level_list("beta0=1.5") == ("beta0", [1.5])
    assert level_list("per-channel-beta=true") == ("per_channel_beta", [True])


@pytest.mark.parametrize(
    "vary, message",
    [
        ("kernel_size=abc", "option kernel_size takes a int (default 3), got 'abc'"),
        ("hidden=0", "Sparta hidden must be >= 1"),
    ],
)
def test_a_bad_level_stops_the_ablation_before_any_training(tmp_path, capsys, vary, message):
    capsys.readouterr()
    assert main(["ablate", "--vary", vary, "--dataset", "digits", "--out", str(tmp_path / "abl")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "abl").exists() or not any((tmp_path / "abl").rglob("model.safetensors"))
