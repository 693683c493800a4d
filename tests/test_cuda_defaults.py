"""Every CUDA default on its CPU stand-in, alone and all at once, end to end.

On CUDA, `sparta train` runs with channels_last and bf16 autocast, optionally with the
fused (compiled) Sparta site and under torch.compile. Each has a CPU stand-in: channels_last and
bf16 autocast exist on the CPU as they are, and the two compiled paths run with the
`aot_eager` backend (the same graph capture and forward/backward split, without
Inductor's code generation). Each setting goes through the whole life of a run: train,
killed after epoch 1 and resumed, evaluation (AutoAttack's adapter with all stand-ins at
once, and on CUDA), the Sparta function exported and imported frozen, and transfer.
"""

from __future__ import annotations

import json

import pytest
import torch

from sparta.checkpoint import load_checkpoint, load_weights
from sparta.config import TrainConfig
from sparta.evaluation import evaluate, evaluate_run
from sparta.runtime import COMPILE_BACKEND_VARIABLE
from sparta.sharing import import_sparta, sparta_sites
from sparta.training import loop
from sparta.training.build import model_for

STAND_INS = {
    "channels_last": {"channels_last": True},
    "bf16": {"precision": "bf16"},
    "fused": {"act_options": {"fused": "compiled"}},
    "compile": {"compile": True},
}
STAND_INS["all"] = {key: value for setting in STAND_INS.values() for key, value in setting.items()}
CASES = [pytest.param("cpu", settings, id=f"cpu-{name}") for name, settings in STAND_INS.items()] + [
    # on a GPU: the defaults (channels_last, bf16) with the fused site, and with --compile
    pytest.param("cuda", {"act_options": {"fused": True}}, id="cuda-defaults", marks=pytest.mark.cuda),
    pytest.param("cuda", {"compile": True}, id="cuda-compile", marks=pytest.mark.cuda),
]


class Killed(Exception):
    """Stands for SIGKILL right after epoch 1's files are written."""


def _train_killed_after_first_epoch(config: TrainConfig, monkeypatch) -> None:
    real_save_state = loop.save_state

    def save_then_die(run_dir, model, optimizer, epoch, step, device):
        real_save_state(run_dir, model, optimizer, epoch, step, device)
        raise Killed

    monkeypatch.setattr(loop, "save_state", save_then_die)
    with pytest.raises(Killed):
        loop.train(config)
    monkeypatch.setattr(loop, "save_state", real_save_state)


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("device, settings", CASES)
def test_a_cuda_default_runs_end_to_end(device, settings, tmp_path, monkeypatch, digits_test, tiny_config):
    def _config(out, device, **changes):  # smaller than the default: the test runs once per setting
        return tiny_config(out, device=device, subset=64, batch_size=32, eval_n=16, **changes)

    if device == "cpu":
        monkeypatch.setenv(COMPILE_BACKEND_VARIABLE, "aot_eager")
    config = _config(tmp_path / "source", device, **settings)

    _train_killed_after_first_epoch(config, monkeypatch)
    assert [r["epoch"] for r in map(json.loads, (tmp_path / "source/metrics.jsonl").read_text().splitlines())] == [0]
    loop.train(TrainConfig.load(config.out), resume=True)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "source/metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]

    # The saved model loads into a model of either memory format and gives the same logits.
    x, _ = digits_test
    model, meta = load_checkpoint(config.out)
    assert meta["epoch"] == 2
    reference = _logits(model, x[:8])
    as_channels_last = model.to(memory_format=torch.channels_last)
    load_weights(as_channels_last, tmp_path / "source/model.safetensors")
    assert torch.allclose(
        _logits(as_channels_last, x[:8].contiguous(memory_format=torch.channels_last)), reference, atol=1e-5
    )

    records = evaluate_run(config.out, ["clean", "pgd", "cw"], n=16, device=device)
    by_attack = {r["attack"]: r["accuracy"] for r in records}
    assert set(by_attack) == {"clean", "pgd", "cw"}
    if device == "cuda" or settings == STAND_INS["all"]:
        # AutoAttack's adapter on the model as `sparta eval` loads it; on the CPU its cheap
        # members only (the standard set takes ~50 s on a barely trained model predicting one
        # class, "robust" on that class's images; tests/test_cli.py runs the standard set).
        loaded, _ = load_checkpoint(config.out, device=device)
        images, labels = (t[:8].to(device) for t in digits_test)
        cheap = {"version": "custom", "attacks": ("apgd-ce", "square"), "n_queries": 20}
        [found] = evaluate(
            loaded,
            images,
            labels,
            ["autoattack"],
            config.eps,
            options={"autoattack": {} if device == "cuda" else cheap},
        )
        assert found["accuracy"] <= evaluate(loaded, images, labels, ["clean"], config.eps)[0]["accuracy"]

    # The exported Sparta function, imported frozen into a fresh model, gives the same logits.
    fresh = model_for(_config(tmp_path / "unused", device, **settings))
    fresh.load_state_dict(
        {k: v for k, v in model.state_dict().items() if ".phi." not in k and "log_beta" not in k}, strict=False
    )
    import_sparta(fresh, tmp_path / "source/sparta.safetensors", freeze=True)
    assert torch.allclose(_logits(fresh, x[:8]), reference, atol=1e-5)

    # Transfer: a new run with the source's function frozen keeps that function unchanged.
    target = _config(
        tmp_path / "target",
        device,
        **settings,
        epochs=1,
        seed=4,
        sparta_from=str(tmp_path / "source"),
        freeze_sparta=True,
    )
    loop.train(target)
    transferred, _ = load_checkpoint(target.out)
    source_sites = [s for sites in sparta_sites(model).values() for s in sites]
    target_sites = [s for sites in sparta_sites(transferred).values() for s in sites]
    for source_site, target_site in zip(source_sites, target_sites, strict=True):
        assert torch.equal(source_site.log_beta, target_site.log_beta)
        for a, b in zip(source_site.phi.parameters(), target_site.phi.parameters(), strict=True):
            assert torch.equal(a, b)
