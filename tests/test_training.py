"""The training engine: loader, methods, schedules, loop, checkpoints, resume, determinism."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from sparta import SpartaError, build_model, load_checkpoint, save_checkpoint
from sparta.config import TrainConfig
from sparta.training.build import model_for
from sparta.training.loader import DeviceLoader, random_crop
from sparta.training.loop import train
from sparta.training.methods import METHODS, AttackSetting
from sparta.training.schedule import SCHEDULES, eps_at


def test_loader_is_a_seeded_permutation():
    images = torch.arange(100.0).view(100, 1, 1, 1).expand(100, 1, 4, 4).contiguous()
    labels = torch.arange(100)
    loader = DeviceLoader(images, labels, 32, seed=1)
    batches = list(loader.epoch(0))
    assert len(batches) == len(loader) == 3
    seen = torch.cat([y for _, y in batches])
    assert len(set(seen.tolist())) == 96
    assert all(torch.equal(x[:, 0, 0, 0], y.float()) for x, y in batches)
    again = [y for _, y in DeviceLoader(images, labels, 32, seed=1).epoch(0)]
    assert all(torch.equal(a, b) for a, b in zip(again, [y for _, y in batches]))
    assert not torch.equal(next(iter(loader.epoch(1)))[1], batches[0][1])


def test_random_crop_shifts_content_and_keeps_shape():
    x = torch.rand(64, 3, 8, 8)
    cut = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert cut.shape == x.shape
    # every crop is a shifted window of the zero-padded image
    padded = torch.nn.functional.pad(x, (2,) * 4)
    for i in range(8):
        assert any(torch.equal(cut[i], padded[i, :, dy : dy + 8, dx : dx + 8]) for dy in range(5) for dx in range(5))
    assert not torch.equal(cut, x)


@pytest.mark.parametrize("method", ["standard", "pgd", "fgsm-rs", "trades"])
def test_each_method_step_gives_gradients(method):
    torch.manual_seed(0)
    model = build_model("smallcnn", "sparta", 10, 1, image_size=28)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    loss, logits = METHODS.get(method)(model, x, y, AttackSetting(eps=0.1, steps=2, step_size=0.05))
    assert torch.isfinite(loss) and logits.shape == (8, 10)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads[:-2])  # the zero-initialised last layer: bias gets one
    assert model.head[-1].bias.grad.abs().sum() > 0


def test_adversarial_loss_exceeds_clean_loss(trained_model, digits_test):
    x, y = digits_test
    setting = AttackSetting(eps=0.1, steps=5, step_size=0.03, bn_training=False)
    trained_model.eval()
    clean, _ = METHODS.get("standard")(trained_model, x, y, setting)
    adversarial, _ = METHODS.get("pgd")(trained_model, x, y, setting)
    assert adversarial > clean


def test_schedules_and_eps_warmup():
    assert SCHEDULES.get("cosine")(0.0) == 1.0 and SCHEDULES.get("cosine")(1.0) == pytest.approx(0.0)
    assert SCHEDULES.get("onecycle")(0.2) == pytest.approx(1.0)
    assert SCHEDULES.get("onecycle")(0.1) == pytest.approx(0.5)
    config = TrainConfig(eps=0.2, eps_warmup_epochs=2)
    assert eps_at(config, 1.0) == pytest.approx(0.1) and eps_at(config, 5.0) == 0.2


def test_train_writes_the_run_directory(tmp_path, tiny_config):
    run = train(tiny_config(tmp_path / "run"))
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "checkpoint.safetensors"):
        assert (run / name).is_file()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1]
    assert {"train_loss", "test_clean", "test_pgd10", "images_per_s"} <= set(lines[0])
    assert TrainConfig.load(run) == tiny_config(tmp_path / "run").validate()  # with the method's attack BN mode
    _model, meta = load_checkpoint(run)
    assert meta["epoch"] == 2 and meta["torch"] == torch.__version__


def test_existing_run_is_not_overwritten(tmp_path, tiny_config):
    train(tiny_config(tmp_path / "run", epochs=1))
    with pytest.raises(SpartaError, match="already holds a run"):
        train(tiny_config(tmp_path / "run", epochs=1))


def test_same_seed_same_weights(tmp_path, tiny_config):
    a = train(tiny_config(tmp_path / "a", epochs=1))
    b = train(tiny_config(tmp_path / "b", epochs=1))
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_divergence_stops_with_a_clear_error(tmp_path, tiny_config):
    with pytest.raises(SpartaError, match="training diverged"):
        train(tiny_config(tmp_path / "run", method="standard", act="relu", lr=1e12, momentum=0.0, epochs=3))


@pytest.mark.parametrize("act", ["relu", "sparta"])
def test_checkpoint_round_trip_gives_identical_logits(tmp_path, act):
    torch.manual_seed(0)
    model = build_model("resnet18", act, 10, 3, share="network").eval()
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    x = torch.rand(3, 3, 32, 32)
    save_checkpoint(model, tmp_path / "m.safetensors", note="x")
    loaded, meta = load_checkpoint(tmp_path / "m.safetensors")
    assert meta == {"note": "x"}
    assert torch.equal(model(x), loaded(x))


def test_shared_depthwise_phi_round_trips_with_its_batchnorm_state(tmp_path):
    """A shared phi's weights are saved once per site name and stay shared after loading;
    each site's own BatchNorm statistics come back to that site, strictly."""
    torch.manual_seed(0)
    model = build_model("smallcnn", "sparta", 10, 1, image_size=28, share="stage", phi="depthwise").train()
    for _ in range(3):
        model(torch.rand(8, 1, 28, 28))  # moves running statistics and num_batches_tracked
    save_checkpoint(model.eval(), tmp_path)
    loaded, _ = load_checkpoint(tmp_path)
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))
    assert loaded.block1[1].phi.conv.weight is loaded.block1[3].phi.conv.weight
    assert int(loaded.block1[3].phi.norm.num_batches_tracked) == 3  # its own 3 batches
    assert torch.equal(loaded.block1[3].phi.norm.running_mean, model.block1[3].phi.norm.running_mean)


def test_checkpoint_of_another_model_names_the_mismatch(tmp_path):
    save_checkpoint(build_model("smallcnn", "relu", 10, 1, image_size=28), tmp_path)
    other = build_model("smallcnn", "sparta", 10, 1, image_size=28)
    from sparta.checkpoint import load_weights

    missing = r"does not match its model: 30 missing \(block1\.1\.log_beta; .*; and 27 more\)$"
    with pytest.raises(SpartaError, match=missing):
        load_weights(other, tmp_path / "model.safetensors")
    wider = build_model("smallcnn", "relu", 10, 3, image_size=28)  # the first conv takes 3 channels, not 1
    reshaped = r"3 of another shape \(.*block1\.0\.weight 32x1x3x3 in the file, 32x3x3x3 in the model\)$"
    with pytest.raises(SpartaError, match=reshaped):
        load_weights(wider, tmp_path / "model.safetensors")


def test_not_a_checkpoint_is_clear(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(SpartaError, match="not a sparta checkpoint"):
        load_checkpoint(tmp_path)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL a real training process mid-run; --resume must end where an unbroken run ends."""
    common = [
        "--dataset",
        "digits",
        "--subset",
        "512",
        "--act",
        "sparta",
        "--method",
        "pgd",
        "--attack-steps",
        "3",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--eval-every",
        "0",
        "--seed",
        "5",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    whole = tmp_path / "whole"
    subprocess.run(
        [sys.executable, "-m", "sparta", "train", *common, "--out", str(whole)],
        check=True,
        env=env,
        capture_output=True,
    )
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "sparta", "train", *common, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (killed / "checkpoint.safetensors").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # now in the middle of the second epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / "checkpoint.safetensors").exists()
    assert len((killed / "metrics.jsonl").read_text().splitlines()) < 3, "the kill came after the last epoch"
    done = subprocess.run(
        [sys.executable, "-m", "sparta", "train", "--resume", str(killed)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    a, b = load_file(whole / "model.safetensors"), load_file(killed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    epochs = [json.loads(line)["epoch"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]


class Stopped(Exception):
    """Stands for a kill between two batches."""


@pytest.mark.parametrize("stop_after", [2, 7])  # batches: inside the first epoch, inside the second
def test_a_run_stopped_inside_an_epoch_resumes_to_the_same_weights_and_metrics(
    tmp_path, monkeypatch, stop_after, tiny_config
):
    """With saves inside epochs, a resumed run skips the batches it trained and ends exactly
    where an unbroken run ends: same weights, same epoch records (running sums carried over)."""
    from sparta.training import loop
    from sparta.training.state import load_state

    monkeypatch.setattr(loop, "STATE_SAVE_SECONDS", 0.0)  # save after every batch but an epoch's last
    config = tiny_config(tmp_path / "run", subset=320, epochs=2, eval_every=0)  # 5 batches of 64 per epoch
    whole = train(TrainConfig(**{**config.__dict__, "out": str(tmp_path / "whole")}))
    real, calls = loop.train_batch, []

    def stops(fit, x, y):
        if len(calls) == stop_after:
            raise Stopped
        calls.append(len(y))
        return real(fit, x, y)

    monkeypatch.setattr(loop, "train_batch", stops)
    with pytest.raises(Stopped):
        train(config)
    model = model_for(config)
    reached = load_state(tmp_path / "run", model, torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu"))
    assert reached["step"] == stop_after and reached["partial"]["seen"] == 64 * (stop_after % 5)
    monkeypatch.setattr(loop, "train_batch", real)
    train(TrainConfig.load(tmp_path / "run"), resume=True)
    a, b = load_file(whole / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    records = [
        [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (whole, tmp_path / "run")
    ]
    keys = ("epoch", "train_loss", "train_acc", "lr", "eps")
    assert [[r[k] for k in keys] for r in records[0]] == [[r[k] for k in keys] for r in records[1]]


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, tiny_config):
    """A NaN loss in epoch 2 stops the run; epoch 1's checkpoint stays loadable and resumable."""
    from sparta.training import loop

    real = METHODS.get("standard")
    calls = {"n": 0}

    def nan_after_first_epoch(model, x, y, setting):
        calls["n"] += 1
        loss, logits = real(model, x, y, setting)
        return (loss * float("nan"), logits) if calls["n"] > 4 else (loss, logits)

    class Methods:
        def get(self, name):
            return nan_after_first_epoch

    monkeypatch.setattr(loop, "METHODS", Methods())
    config = tiny_config(tmp_path / "run", method="standard", act="relu", epochs=3, eval_every=0)  # 4 batches an epoch
    with pytest.raises(SpartaError, match="training diverged: loss is nan at epoch 2"):
        train(config)
    model, meta = load_checkpoint(config.out)
    assert meta["epoch"] == 1 and all(torch.isfinite(p).all() for p in model.parameters())
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


class _NaNGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose step makes the weights NaN."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


@pytest.mark.parametrize("epochs, fault", [(1, "nan-step"), (2, "nan-step"), (2, "huge-lr")])
def test_a_diverged_epoch_saves_nothing_and_fails(tmp_path, monkeypatch, epochs, fault, tiny_config):
    """No checkpoint of non-finite (or overflowing) weights is ever written or called good;
    the run fails, in its first epoch here, so nothing at all is kept."""
    from sparta.training import loop

    changes = dict(lr=1e30, schedule="constant", momentum=0.0) if fault == "huge-lr" else {}
    if fault == "nan-step":
        real = METHODS.get("standard")

        def nan_gradients(model, x, y, setting):
            _loss, logits = real(model, x, y, setting)
            return torch.nn.functional.cross_entropy(_NaNGradient.apply(logits), y), logits

        monkeypatch.setattr(loop, "METHODS", type("M", (), {"get": lambda self, name: nan_gradients})())
    config = tiny_config(
        tmp_path / "run",
        method="standard",
        act="relu",
        subset=64,
        batch_size=32,
        eval_every=0,
        epochs=epochs,
        **changes,
    )
    with pytest.raises(SpartaError, match=r"training diverged.*nothing was saved"):
        train(config)
    run = tmp_path / "run"
    assert not (run / "model.safetensors").exists() and not (run / "checkpoint.safetensors").exists()
    assert not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text().strip()


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(weight_decay=float("nan")), "weight_decay must be a finite number"),
        (dict(lr=float("inf")), "lr must be a finite number"),
        (dict(eps="0.1"), "eps must be float"),
        (dict(epochs="ten"), "epochs must be int"),
        (dict(epochs=[1]), "epochs must be int"),
        (dict(eval_n=0), "eval n must be >= 1"),
        (dict(subset=10_000), "subset 10000 is larger than the training set"),
        (dict(subset=64, batch_size=1000, epochs=1), "the model would not train"),
    ],
)
def test_bad_settings_fail_before_the_run_directory_is_written(tmp_path, changes, message, tiny_config):
    with pytest.raises(SpartaError, match=message):
        train(tiny_config(tmp_path / "run", **changes))
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_run_that_stopped_before_its_first_epoch_can_be_started_again_or_resumed(tmp_path, tiny_config):
    config = tiny_config(
        tmp_path / "run", act="relu", method="standard", subset=64, batch_size=32, epochs=1, eval_every=0
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(config.validate().to_json())  # what a run killed in epoch 1 leaves
    assert train(TrainConfig.load(run), resume=True) == run and (run / "model.safetensors").exists()
    (run / "checkpoint.safetensors").unlink()
    (run / "model.safetensors").unlink()
    assert train(config) == run and (run / "model.safetensors").exists()


def test_one_writer_per_run_directory(tmp_path, tiny_config):
    from sparta.training.loop import run_lock

    code = (
        "import sys, time; from sparta.training.loop import run_lock; from pathlib import Path\n"
        "with run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(SpartaError, match="another sparta process is writing"):
        train(tiny_config(tmp_path / "run", act="relu", method="standard", subset=64, batch_size=32, epochs=1))
    holder.kill()  # a killed writer leaves no stuck lock
    holder.wait()
    with run_lock(tmp_path / "run"):
        with run_lock(tmp_path / "run"):  # re-entrant within a process (a grid cell, then its training)
            pass
    holder = subprocess.Popen(
        [sys.executable, "-c", code.replace("time.sleep(60)", "time.sleep(2)"), str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    with run_lock(tmp_path / "run", wait=True):  # a shard waits for the other writer instead of failing
        assert time.monotonic() - started > 0.5  # it waited for the holder
    holder.wait()


def test_a_model_with_nan_weights_is_refused_when_loaded(tmp_path):
    model = build_model("smallcnn", "relu", in_channels=1, image_size=16)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    save_checkpoint(model, tmp_path / "model.safetensors")
    with pytest.raises(SpartaError, match="NaN or infinite values in 1 tensor"):
        load_checkpoint(tmp_path / "model.safetensors")


def test_a_run_that_ends_at_chance_is_flagged_as_a_warning_not_a_print(capsys):
    import warnings

    from sparta.progress import SpartaWarning
    from sparta.training.chance import warn_if_at_chance

    with pytest.warns(SpartaWarning, match=r"runs/x ended near chance \(training accuracy 10.3% with 10 classes\)"):
        assert warn_if_at_chance("runs/x", 0.103, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_at_chance("runs/x", 0.30, 10)
    assert capsys.readouterr().err == ""  # the library itself prints nothing


def test_training_checks_its_last_epoch_against_chance(tmp_path, monkeypatch, tiny_config):
    from sparta.training import loop

    seen = []
    monkeypatch.setattr(loop, "warn_if_at_chance", lambda run_dir, acc, classes: seen.append((acc, classes)))
    run_dir = train(tiny_config(tmp_path / "run", method="standard", epochs=1, subset=64, batch_size=32, eval_every=0))
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert seen == [(last["train_acc"], 10)]


def _batchnorm_modes_per_forward(model, run):
    """The model's training flag (what BatchNorm follows) at each forward pass during run()."""
    modes = []
    handle = model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    try:
        run()
    finally:
        handle.remove()
    return modes


def test_trades_attacks_in_eval_mode_by_default_as_published():
    """Zhang et al.'s trades.py: eval mode for the clean target and the attack, train mode for the loss."""
    torch.manual_seed(0)
    model = build_model("smallcnn", "relu", num_classes=10, in_channels=1, image_size=28).train()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    config = TrainConfig(method="trades", attack_steps=3).validate()
    assert config.attack_bn_mode == "eval" and not config.attack_bn_training
    setting = AttackSetting(eps=0.1, steps=3, step_size=0.03, bn_training=config.attack_bn_training)
    modes = _batchnorm_modes_per_forward(model, lambda: METHODS.get("trades")(model, x, y, setting))
    assert modes == [False] * 4 + [True, True]  # target + 3 attack steps in eval; 2 loss passes in train
    variant = TrainConfig(method="trades", attack_bn_mode="train").validate()
    assert variant.attack_bn_training
    assert TrainConfig(method="pgd").validate().attack_bn_mode == "train"  # Madry et al.'s choice stays


@pytest.mark.parametrize("phi, share", [("pooled", "stage"), ("depthwise", "layer"), ("depthwise", "stage")])
def test_frozen_sparta_function_stays_bit_identical(tmp_path, phi, share, tiny_config):
    """--freeze-sparta: every tensor of the imported function (BatchNorm statistics included)
    is unchanged by training, at every site, also when several sites share one phi."""
    from sparta.sharing import export_sparta

    torch.manual_seed(1)
    source = build_model("smallcnn", "sparta", num_classes=10, in_channels=1, image_size=28, share=share, phi=phi)
    for module in source.modules():  # a function that is not the initial one
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_()
    function = tmp_path / "function.safetensors"
    export_sparta(source, function)
    config = tiny_config(
        tmp_path / "run",
        method="standard",
        epochs=1,
        subset=128,
        share=share,
        act_options={"phi": phi},
        sparta_from=str(function),
        freeze_sparta=True,
        eval_every=0,
    )
    train(config)
    trained, _ = load_checkpoint(config.out)
    export_sparta(trained, tmp_path / "after.safetensors")
    before, after = load_file(function), load_file(tmp_path / "after.safetensors")
    assert before.keys() == after.keys()
    changed = [key for key in before if not torch.equal(before[key], after[key])]
    assert not changed


def test_a_sparta_function_with_nan_is_refused_on_import(tmp_path):
    from safetensors.torch import save_file

    from sparta import export_sparta, import_sparta

    model = build_model("smallcnn", "sparta", in_channels=1, image_size=16)
    export_sparta(model, tmp_path / "sparta.safetensors")
    tensors = load_file(tmp_path / "sparta.safetensors")
    first = sorted(tensors)[0]
    tensors[first] = torch.full_like(tensors[first], float("inf"))
    save_file(tensors, tmp_path / "bad.safetensors")
    with pytest.raises(SpartaError, match="holds NaN or infinite values"):
        import_sparta(build_model("smallcnn", "sparta", in_channels=1, image_size=16), tmp_path / "bad.safetensors")


@pytest.mark.parametrize("method", ["pgd", "fgsm-rs", "trades"])
def test_a_training_step_of_the_loop_syncs_with_the_host_once(monkeypatch, method):
    """The loop's batches were checked when the data set loaded, so a step skips the
    per-batch checks: one host sync (loss and correct count together), none for the gate;
    the same method called with an unchecked setting still checks its batch."""
    from sparta.training.loop import attack_setting, train_step

    torch.manual_seed(0)
    model = build_model("smallcnn", "sparta", num_classes=10, in_channels=1, image_size=16).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 10, (8,))
    config = TrainConfig(method=method, eps=0.1, attack_steps=3).validate()
    syncs = []
    for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, _name=name, **kwargs):
            syncs.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    setting = attack_setting(config, 1.0)
    assert setting.checked and setting.eps == pytest.approx(0.1)
    loss, right = train_step(model, optimizer, METHODS.get(method), x, y, setting, torch.autocast("cpu", enabled=False))
    assert syncs == ["tolist"] and 0 <= right <= 8 and loss > 0
    syncs.clear()
    unchecked = AttackSetting(eps=0.1, steps=3, step_size=0.03)
    with pytest.raises(SpartaError, match=r"labels must lie in 0\.\.9"):
        METHODS.get(method)(model, x, torch.full((8,), 12), unchecked)
    assert syncs  # the unchecked path looked at the labels
