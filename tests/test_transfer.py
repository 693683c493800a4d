"""sparta transfer: a trained Sparta function, frozen, in another dataset or CNN, against two baselines."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from sparta import SpartaError
from sparta.cli import main
from sparta.config import TrainConfig
from sparta.experiments import arm_cells, read_source
from sparta.experiments.transfer import default_share, target_config
from sparta.training.loop import train

TINY = [
    "--subset",
    "48",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--attack-steps",
    "1",
    "--eval-every",
    "0",
    "--attacks",
    "clean,pgd",
    "--n",
    "32",
]
ARMS = ("relu", "sparta-scratch", "sparta-frozen")


@pytest.fixture(scope="module")
def cross_dataset(tmp_path_factory):
    """Fashion-MNIST source trained in the command, transferred to digits.

    Three steps: the first only moves the zero-initialised last layer, the last has lr 0.
    """
    out = tmp_path_factory.mktemp("transfer")
    code = main(
        [
            "transfer",
            "--kind",
            "cross-dataset",
            "--target-dataset",
            "digits",
            "--seeds",
            "1",
            "--act-option",
            "hidden=2",
            *TINY,
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_cross_dataset_gives_three_arms(cross_dataset):
    rows = list(csv.DictReader((cross_dataset / "table.csv").open()))
    assert [r["arm"] for r in rows] == list(ARMS)
    assert {(r["model"], r["dataset"], r["n_seeds"]) for r in rows} == {("smallcnn", "digits", "1")}
    by_arm = {r["arm"]: r for r in rows}
    assert by_arm["sparta-frozen"]["params"] == by_arm["sparta-scratch"]["params"]
    assert int(by_arm["sparta-frozen"]["trainable_params"]) < int(by_arm["sparta-scratch"]["trainable_params"])
    source = json.loads((cross_dataset / "source-smallcnn-fashion-mnist-seed0" / "config.json").read_text())
    assert source["dataset"] == "fashion-mnist" and source["share"] == "stage"
    assert source["act_options"] == {"hidden": 2}


def test_frozen_arm_keeps_the_source_function_and_scratch_arm_learns_its_own(cross_dataset):
    source = load_file(cross_dataset / "source-smallcnn-fashion-mnist-seed0" / "sparta.safetensors")
    frozen = load_file(cross_dataset / "sparta-frozen-smallcnn-digits-seed0" / "sparta.safetensors")
    scratch = load_file(cross_dataset / "sparta-scratch-smallcnn-digits-seed0" / "sparta.safetensors")
    assert source.keys() == frozen.keys() == scratch.keys()
    assert any(source[k].abs().sum() > 0 for k in source if "conv2.weight" in k)  # trained, not the zero init
    assert all(torch.equal(source[k], frozen[k]) for k in source)
    assert not all(torch.equal(source[k], scratch[k]) for k in source)


def test_rerun_with_the_source_dir_skips_everything(cross_dataset, capsys):
    source = cross_dataset / "source-smallcnn-fashion-mnist-seed0"
    assert (
        main(
            [
                "transfer",
                "--kind",
                "cross-dataset",
                "--source",
                str(source),
                "--target-dataset",
                "digits",
                "--seeds",
                "1",
                *TINY,
                "--out",
                str(cross_dataset),
            ]
        )
        == 0
    )
    output = capsys.readouterr().out
    assert output.count("done, skipped") == 3
    assert "frozen function: bit-identical to the source's in all 1 trained frozen cells" in output


def test_table_only_tabulates_finished_arms_and_trains_nothing(cross_dataset, tmp_path, capsys):
    argv = ["transfer", "--kind", "cross-dataset", "--target-dataset", "digits", "--act-option", "hidden=2", *TINY]
    assert main([*argv, "--seeds", "2", "--out", str(cross_dataset), "--table-only"]) == 0
    captured = capsys.readouterr()
    unfinished = ", ".join(f"{arm}-smallcnn-digits-seed1" for arm in ARMS)
    assert f"left out of the table: {unfinished}" in captured.err
    assert "frozen function: bit-identical to the source's in all 1 trained frozen cells" in captured.out
    assert not list(cross_dataset.glob("*-seed1"))  # nothing trained
    empty = tmp_path / "empty"
    assert main([*argv, "--seeds", "1", "--out", str(empty), "--table-only"]) == 2
    assert "no finished cell to tabulate yet" in capsys.readouterr().err
    assert not (empty / "source-smallcnn-fashion-mnist-seed0").exists()  # the source is not trained either


def test_a_transfer_folder_copied_elsewhere_stays_checkable(cross_dataset, tmp_path, monkeypatch, capsys):
    """config.json records the source relative to the run directory, not as a path of the
    machine that ran it: a copy of the folder (another machine, a clone) finds its source."""
    import shutil

    frozen = cross_dataset / "sparta-frozen-smallcnn-digits-seed0"
    recorded = json.loads((frozen / "config.json").read_text())["sparta_from"]
    assert recorded == "../source-smallcnn-fashion-mnist-seed0/sparta.safetensors"
    copy = tmp_path / "elsewhere" / "transfer"
    shutil.copytree(cross_dataset, copy)
    loaded = TrainConfig.load(copy / frozen.name)
    assert loaded.sparta_from == str(copy / "source-smallcnn-fashion-mnist-seed0" / "sparta.safetensors")
    monkeypatch.chdir(tmp_path / "elsewhere")  # paths given relative to another working directory
    argv = ["transfer", "--kind", "cross-dataset", "--source", "transfer/source-smallcnn-fashion-mnist-seed0"]
    capsys.readouterr()
    assert main([*argv, "--target-dataset", "digits", "--seeds", "1", *TINY, "--out", "transfer"]) == 0
    assert capsys.readouterr().out.count("done, skipped") == 3


def test_the_frozen_function_is_checked_bit_identical_to_its_source(cross_dataset, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    from sparta.experiments.transfer import frozen_function_change

    frozen = cross_dataset / "sparta-frozen-smallcnn-digits-seed0"
    assert frozen_function_change(frozen) is None
    copy = tmp_path / "transfer"
    shutil.copytree(cross_dataset, copy)
    function = load_file(copy / frozen.name / "sparta.safetensors")
    name = next(k for k in sorted(function) if k.endswith("log_beta"))
    function[name] = function[name] + 1e-6  # the smallest drift counts
    save_file(function, copy / frozen.name / "sparta.safetensors")
    assert (
        frozen_function_change(copy / frozen.name)
        == f"1 of {len(function)} tensors differ from the source's (first: {name})"
    )
    source = copy / "source-smallcnn-fashion-mnist-seed0"
    argv = ["transfer", "--kind", "cross-dataset", "--source", str(source), "--target-dataset", "digits"]
    capsys.readouterr()
    assert main([*argv, "--seeds", "1", *TINY, "--out", str(copy)]) == 0
    assert "frozen function CHANGED in 1 of 1 frozen cells" in capsys.readouterr().err
    with pytest.raises(SpartaError, match="did not train with a frozen imported Sparta function"):
        frozen_function_change(copy / "sparta-scratch-smallcnn-digits-seed0")


def test_stage_shared_function_does_not_fit_another_cnn_but_network_shared_does(cross_dataset, tmp_path):
    source = read_source(cross_dataset / "source-smallcnn-fashion-mnist-seed0")
    target = target_config(TrainConfig(dataset="digits"), "cross-cnn", source, "resnet34", None)
    assert (target.model, target.dataset) == ("resnet34", "fashion-mnist")
    with pytest.raises(SpartaError, match="use share='network'"):
        arm_cells(target, source, [0], tmp_path)
    assert default_share("smallcnn", "resnet34") == "network" and default_share("resnet18", "resnet34") == "stage"


def test_network_shared_function_fits_any_cnn(tmp_path):
    run = train(
        TrainConfig(
            out=str(tmp_path / "src"),
            dataset="digits",
            subset=32,
            batch_size=16,
            epochs=1,
            method="standard",
            share="network",
            act_options={"hidden": 2},
            eval_every=0,
        )
    )
    source = read_source(run)  # exports sparta.safetensors for a run made by `sparta train`
    assert source.function == (run / "sparta.safetensors").resolve() and source.share == "network"
    target = target_config(TrainConfig(), "cross-cnn", source, "resnet34", None)
    cells = arm_cells(target, source, [0, 1], tmp_path / "out")
    # seed by seed, so an experiment stopped part-way leaves paired seeds
    assert [(c.labels["arm"], c.config.seed) for c in cells] == [(a, s) for s in (0, 1) for a in ARMS]
    frozen = cells[-1].config
    assert frozen.freeze_sparta and frozen.sparta_from == str(source.function) and frozen.share == "network"
    assert frozen.model == "resnet34" and frozen.act_options == {"hidden": 2} and cells[0].config.act_options == {}


def test_transfer_errors_are_clear(cross_dataset, tmp_path, capsys):
    relu = cross_dataset / "relu-smallcnn-digits-seed0"
    cases = [
        (["--kind", "cross-dataset", "--source", str(relu), "--target-dataset", "mnist"], "must use Sparta"),
        (
            ["--kind", "cross-cnn", "--source", str(cross_dataset / "sparta-frozen-smallcnn-digits-seed0")],
            "--kind cross-cnn needs --target-model",
        ),
        (
            [
                "--kind",
                "cross-dataset",
                "--source",
                str(cross_dataset / "sparta-frozen-smallcnn-digits-seed0"),
                "--target-dataset",
                "digits",
            ],
            "a target dataset other than the source's (digits)",
        ),
        (
            ["--kind", "cross-cnn", "--source", str(relu / "model.safetensors"), "--target-model", "resnet18"],
            "not a Sparta function file",
        ),
        (
            [
                "--kind",
                "cross-cnn",
                "--source",
                str(cross_dataset / "sparta-frozen-smallcnn-digits-seed0" / "sparta.safetensors"),
                "--target-model",
                "resnet18",
            ],
            "does not name its dataset",
        ),
        (
            [
                "--kind",
                "cross-cnn",
                "--source",
                str(cross_dataset / "source-smallcnn-fashion-mnist-seed0"),
                "--target-model",
                "resnet18",
                "--share",
                "network",
            ],
            "--share is the source's",
        ),
    ]
    for argv, message in cases:
        assert main(["transfer", *argv, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("sparta: error:") and message in err and "\n" not in err
