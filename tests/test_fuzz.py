"""Fuzzing the inputs: any value of a numeric flag or a config.json setting either gets
through every check or gives the one-line error (exit 2); never a traceback.

Training itself is replaced by a stand-in that records the checked settings, so each
example costs milliseconds; what is fuzzed is the path from the input to the run."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparta.cli import main
from sparta.config import TrainConfig

NUMERIC_FLAGS = [
    "--eps",
    "--attack-step-size",
    "--lr",
    "--momentum",
    "--weight-decay",
    "--epochs",
    "--batch-size",
    "--subset",
    "--attack-steps",
    "--eval-n",
    "--eval-every",
    "--seed",
    "--trades-beta",
    "--eps-warmup-epochs",
]

flag_text = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
    st.sampled_from(["1/0", "8/255", "0/0", "1e309", "-0", "0x10", "", " ", "nan", "-inf", "1_000", "2/", "1/3"]),
)
json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**12), 10**12),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=5,
)
FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("out", "device", "data_root")]


@pytest.fixture()
def reached(monkeypatch, tmp_path):
    """Stands in for the training: records the config that got through every check."""
    from sparta.training import loop

    seen: list[TrainConfig] = []

    def stand_in(config, resume, method, schedule, ranks, device, own_model=None):
        seen.append(config)
        run = tmp_path / "reached"
        run.mkdir(exist_ok=True)
        (run / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "train_loss": 1.0}) + "\n")
        (run / "model.safetensors").touch()  # the command reports a run as trained only with its model
        return run

    monkeypatch.setattr(loop, "_train", stand_in)
    return seen


def outcome(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    return code, capsys.readouterr().err.strip()


def assert_sound(config: TrainConfig) -> None:
    """What every check together promises about a config that reaches training."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if isinstance(value, float):
            assert math.isfinite(value), item.name
    assert 0 <= config.eps <= 1 and config.lr > 0 and 0 <= config.momentum < 1
    assert config.epochs >= 1 and config.batch_size >= 1 and config.attack_steps >= 1 and config.eval_n >= 1
    assert config.subset is None or config.subset >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(NUMERIC_FLAGS), value=flag_text)
def test_any_numeric_flag_value_runs_or_is_one_line(flag, value, reached, capsys, tmp_path):
    before = len(reached)
    code, err = outcome(["train", "--dataset", "digits", "--out", str(tmp_path / "run"), f"{flag}={value}"], capsys)
    assert code in (0, 2), (flag, value, code, err)
    if code == 2:
        assert err.startswith("sparta: error:") and "\n" not in err, err
        assert len(reached) == before
    else:
        assert len(reached) == before + 1
        assert_sound(reached[-1])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=json_value)
def test_any_config_json_value_runs_or_is_one_line(field, value, reached, capsys, tmp_path):
    folder = Path(tmp_path)
    settings_ = json.loads(TrainConfig(dataset="digits").to_json())
    settings_[field] = value
    (folder / "config.json").write_text(json.dumps(settings_))
    before = len(reached)
    code, err = outcome(["train", "--config", str(folder / "config.json"), "--out", str(folder / "run")], capsys)
    assert code in (0, 2), (field, value, code, err)
    if code == 2:
        assert err.startswith("sparta: error:") and "\n" not in err, err
        assert len(reached) == before
    else:
        assert_sound(reached[-1])
