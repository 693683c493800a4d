"""A model of the user's own through the library's loop and checkpoints (sparta.train(model=))."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import sparta
from sparta.cli import main
from sparta.errors import SpartaError


def tiny_net(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), sparta.Sparta(4), nn.Flatten(), nn.Linear(4 * 14 * 14, classes)
    )


def config(tmp_path, **changes) -> sparta.TrainConfig:
    settings = dict(
        out=str(tmp_path / "run"),
        dataset="digits",
        subset=128,
        epochs=1,
        batch_size=64,
        attack_steps=2,
        eval_n=16,
        eps=0.1,
    )
    return sparta.TrainConfig(**{**settings, **changes})


def test_own_model_trains_saves_loads_and_evaluates(tmp_path, capsys):
    torch.manual_seed(0)
    model = tiny_net()
    before = [p.detach().clone() for p in model.parameters()]
    run = sparta.train(config(tmp_path), model=model)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "trained in place"
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["model"] == "custom" and recorded["act"] == "custom"
    assert (run / "sparta.safetensors").is_file()  # its Sparta function is exported like any run's
    with pytest.raises(SpartaError, match=r"model of your own \(torch.nn.modules.container.Sequential\)"):
        sparta.load_checkpoint(run)
    fresh, meta = sparta.load_checkpoint(run, model=tiny_net())
    assert meta["epoch"] == 1 and not fresh.training
    for mine, loaded in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(mine, loaded)
    records = sparta.evaluate_run(run, ["clean"], n=16, model=tiny_net())
    assert records[0]["n"] == 16 and 0 <= records[0]["accuracy"] <= 1
    # the CLI cannot rebuild it, and says how to go on, in one line
    capsys.readouterr()
    assert main(["train", "--config", str(run / "config.json"), "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err.strip()
    assert "model of your own" in err and "model=your_model" in err and "\n" not in err
    assert not (tmp_path / "again" / "model.safetensors").exists()


def test_own_model_resumes_only_with_its_architecture(tmp_path):
    torch.manual_seed(0)
    run = sparta.train(config(tmp_path), model=tiny_net())
    trained = (run / "model.safetensors").read_bytes()
    with pytest.raises(SpartaError, match="model of your own"):
        sparta.train(sparta.TrainConfig.load(run), resume=True)
    sparta.train(sparta.TrainConfig.load(run), model=tiny_net(), resume=True)  # finished: nothing to do
    assert (run / "metrics.jsonl").read_text().count("\n") == 1
    assert (run / "model.safetensors").read_bytes() == trained


@pytest.mark.parametrize(
    "model, message",
    [
        (tiny_net(classes=3), r"must return logits of shape \(batch, 10\).*got \(2, 3\)"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), r"fails on this dataset's images of shape \(1, 28, 28\)"),
        (nn.Sequential(nn.Flatten(), nn.Linear(784, 10).requires_grad_(False)), "no trainable parameters"),
        ("resnet18", "must be a torch.nn.Module"),
    ],
)
def test_an_unfit_own_model_is_refused_before_anything_is_written(tmp_path, model, message):
    with pytest.raises(SpartaError, match=message):
        sparta.train(config(tmp_path), model=model)
    assert not (tmp_path / "run").exists()


def test_save_checkpoint_takes_any_model(tmp_path):
    model = tiny_net()
    path = sparta.save_checkpoint(model, tmp_path / "mine.safetensors", note="mine")
    loaded, meta = sparta.load_checkpoint(path, model=tiny_net())
    assert meta == {"note": "mine"}
    assert torch.equal(loaded[0].weight, model[0].weight)


def test_site_summaries_of_a_users_model_and_a_light_import():
    """`sparta.site_summaries` measures the Sparta sites of any model; `import sparta` itself
    does not load matplotlib (only drawing a report does)."""
    import subprocess
    import sys

    torch.manual_seed(0)
    summaries = sparta.site_summaries(tiny_net(), torch.rand(8, 1, 28, 28))
    assert [s.site for s in summaries] == ["1"] and isinstance(summaries[0], sparta.SiteSummary)
    assert summaries[0].beta == pytest.approx(4.0) and summaries[0].threshold_sd == 0  # untrained: T = 0 everywhere
    probe = "import sys, sparta; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"
