"""Pretrained models: shipping a run, loading it in one line, and each shipped model's accuracy."""

from __future__ import annotations

import pytest
import torch

import sparta
from sparta.cli import main
from sparta.data import load_dataset
from sparta.evaluation import accuracy, evaluate_run
from sparta.pretrained import find_accuracy, load_pretrained, pretrained_names, ship

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
