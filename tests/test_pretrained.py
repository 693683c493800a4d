"""Pretrained models: shipping a run, loading it in one line, and each shipped model's accuracy."""

from __future__ import annotations

import dataclasses
import shlex

import pytest
import torch

import sparta
from sparta.cli import build_parser, main
from sparta.commands.train import config_from_args
from sparta.config import TrainConfig
from sparta.data import load_dataset
from sparta.evaluation import accuracy, evaluate_run
from sparta.pretrained import find_accuracy, load_pretrained, pretrained_names, pretrained_record, ship

SLICE = 1000  # test images each shipped model is re-checked on (ship_pretrained.py records it)


def test_a_shipped_run_loads_in_one_line_with_its_record(trained_run, tmp_path, digits_test):
    evaluate_run(trained_run, ["clean"], n=64, device="cpu")
    ship(trained_run, "digits-relu", "sparta train --dataset digits ...", root=tmp_path)
    assert pretrained_names(tmp_path) == ["digits-relu"]
    model, record = load_pretrained("digits-relu", root=tmp_path)
    original, _ = sparta.load_checkpoint(trained_run)
    x, y = digits_test
    with torch.no_grad():
        assert torch.equal(model(x), original.eval()(x))
    assert record["command"].startswith("sparta train") and record["config"]["dataset"] == "digits"
    assert accuracy(model, x, y) == pytest.approx(find_accuracy(record, "clean", n=64)["accuracy"])


def test_unknown_name_is_one_clear_error(tmp_path):
    with pytest.raises(sparta.SpartaError, match="unknown pretrained model 'nope'"):
        load_pretrained("nope", root=tmp_path)


def test_models_command_lists_what_ships(capsys):
    assert main(["models", "--commands"]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in pretrained_names()) or "no pretrained models" in printed


@pytest.mark.parametrize("name", pretrained_names())
def test_each_shipped_model_matches_its_record_on_a_slice(name):
    model, record = load_pretrained(name)
    config = record["config"]
    x, y = load_dataset(config["dataset"], "test")
    expected = find_accuracy(record, "clean", n=SLICE)
    assert expected is not None, f"{name} has no clean record on {SLICE} images"
    # 2 images of 1000 of slack: another CPU may round a borderline logit the other way
    assert accuracy(model, x[:SLICE], y[:SLICE]) == pytest.approx(expected["accuracy"], abs=0.002)
    assert find_accuracy(record, "autoattack") is not None, f"{name} ships without AutoAttack"


@pytest.mark.parametrize("name", pretrained_names())
def test_each_shipped_command_trains_the_shipped_config(name):
    """A shipped model's command.txt, run today, must train the run it ships (the Sparta
    model's did not once: its recorded command had come to train another parametrisation)."""
    record = pretrained_record(name)
    words = shlex.split(record["command"])
    assert words[:2] == ["sparta", "train"], record["command"]
    args = build_parser().parse_args([word.replace("RUN_DIR", "runs/x") for word in words[1:]])
    from_command = TrainConfig(**config_from_args(args)).validate()
    shipped = TrainConfig.from_dict(record["config"])
    assert dataclasses.replace(from_command, out=shipped.out) == shipped
