"""The command line: train then eval end to end, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from sparta.cli import main
from sparta.config import TrainConfig as TrainConfig

TINY = [
    "--dataset",
    "digits",
    "--subset",
    "192",
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--attack-steps",
    "2",
    "--eval-n",
    "32",
]


def test_train_then_eval(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                *TINY,
                "--act",
                "sparta",
                "--act-option",
                "hidden=4",
                "--method",
                "trades",
                "--eps",
                "8/255",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "trained" in captured.out
    # the library's per-epoch line reaches the terminal through the CLI's logging set-up
    assert "epoch 1/1: train loss" in captured.err and "test clean" in captured.err
    config = json.loads((run / "config.json").read_text())
    assert config["act_options"] == {"hidden": 4} and config["eps"] == pytest.approx(8 / 255)
    assert main(["eval", str(run), "--attacks", "clean,fgsm,pgd,cw", "--n", "40"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "cw: running on 40 test images" in captured.err
    assert all(name in printed for name in ("clean", "fgsm", "pgd", "cw", "worst-case"))
    results = json.loads((run / "eval.json").read_text())["results"]
    by_attack = {r["attack"]: r for r in results}
    assert set(by_attack) == {"clean", "fgsm", "pgd", "cw"}
    assert by_attack["pgd"]["settings"]["steps"] == 20 and by_attack["pgd"]["n"] == 40
    assert by_attack["pgd"]["accuracy"] <= by_attack["clean"]["accuracy"]
    # a second eval at another eps adds records instead of replacing them
    assert main(["eval", str(run), "--attacks", "pgd", "--n", "40", "--eps", "0.2"]) == 0
    results = json.loads((run / "eval.json").read_text())["results"]
    assert sorted(r["eps"] for r in results if r["attack"] == "pgd") == pytest.approx([8 / 255, 0.2])


def test_eval_autoattack_from_the_cli(trained_run, capsys):
    assert main(["eval", str(trained_run), "--attacks", "autoattack", "--n", "16", "--eps", "0.1"]) == 0
    assert "autoattack" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", *TINY, "--act", "rellu"], "unknown activation 'rellu'"),
        (["train", *TINY, "--model", "vgg"], "unknown model 'vgg'"),
        (["train", *TINY, "--method", "free"], "unknown training method 'free'"),
        (["train", *TINY[:4], "--epochs", "-1"], "epochs must be >= 1"),
        (["train", *TINY, "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["train", "--dataset", "mnist", "--data-root", "/nonexistent", "--epochs", "1"], "missing"),
        (["train", *TINY, "--freeze-sparta"], "--freeze-sparta needs --sparta-from"),
        (["eval", "/nonexistent/run"], "is not a run directory"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys, argv, message):
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparta: error:") and message in err and "\n" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--eps", "1.5"], "eps must lie in [0, 1]"),
        (["train", "--eps", "-0.1"], "eps must lie in [0, 1]"),
        (["train", "--eps", "nan"], "eps must be a number"),
        (["train", "--eps", "inf"], "eps must"),
        (["train", "--eps", "1e9"], "eps must lie in [0, 1]"),
        (["train", "--eps", "1/0"], "eps must be a number"),
        (["train", "--channels-last", "maybe"], "unrecognized arguments: maybe"),
        (["compare", "--shard", "3/2"], "--shard"),
        (["compare", "--shard", "0/0"], "--shard"),
        (["compare", "--shard", "-1/2"], "--shard"),
        (["ablate", "--vary", "kernel_size="], "--vary"),
        (["eval", "run", "--attacks"], "expected one argument"),
    ],
)
def test_bad_flag_values_are_one_line_from_the_parser(tmp_path, capsys, argv, message):
    """argparse's own refusals: one line naming the flag and the --help to read, exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparta: error:") and message in err and "\n" not in err, err
    assert "--help`)" in err


def test_config_redoes_a_run_with_overrides(tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["train", *TINY, "--act", "relu", "--method", "standard", "--seed", "4", "--out", str(first)]) == 0
    second = tmp_path / "second"
    assert main(["train", "--config", str(first / "config.json"), "--epochs", "2", "--out", str(second)]) == 0
    again = json.loads((second / "config.json").read_text())
    before = json.loads((first / "config.json").read_text())
    assert again == {**before, "epochs": 2, "out": str(second)}
    capsys.readouterr()
    assert main(["train", "--config", str(first)]) == 2  # same --out: the run is there already
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--resume", str(first), "--config", str(first)]) == 2
    assert "drop --config" in capsys.readouterr().err


def test_resume_refuses_extra_settings(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--epochs", "3"]) == 2
    assert "--resume takes the settings" in capsys.readouterr().err


def test_console_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "sparta", "eval", "/nonexistent"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1


def test_sparta_from_a_run_and_a_mismatched_target(tmp_path, capsys):
    source = tmp_path / "source"
    assert main(["train", *TINY, "--act", "sparta", "--out", str(source)]) == 0
    assert (source / "sparta.safetensors").is_file()
    frozen = tmp_path / "frozen"
    assert (
        main(["train", *TINY, "--act", "sparta", "--sparta-from", str(source), "--freeze-sparta", "--out", str(frozen)])
        == 0
    )
    capsys.readouterr()  # the tiny runs may warn that they ended near chance
    assert (
        main(
            [
                "train",
                *TINY,
                "--model",
                "resnet18",
                "--act",
                "sparta",
                "--sparta-from",
                str(source),
                "--out",
                str(tmp_path / "mismatch"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "has stages" in err and "share='network'" in err and "\n" not in err


@pytest.mark.parametrize("command", ["", "train", "eval", "compare", "transfer", "ablate", "report", "download"])
def test_every_help_works(command, capsys):
    """`sparta --help` and each command's --help print usage and exit 0 (a stray % once broke them)."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "usage: sparta" in printed
    if command == "train":  # choices come from the registries, each flag says what it does
        assert "one of: relu, swish" in printed and "one of: smallcnn" in printed
        assert "peak learning rate" in printed


def test_bare_command_names_the_missing_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparta: error: choose a command: ") and "train" in err and "\n" not in err


def test_an_internal_error_is_one_line_unless_debugging(monkeypatch, capsys):
    from sparta.commands import eval as eval_command

    def broken(args):
        raise RuntimeError("view size is not compatible\nsecond line")

    monkeypatch.setattr(eval_command, "run", broken)
    assert main(["eval", "anything"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparta: internal error: RuntimeError: view size") and "\n" not in err
    monkeypatch.setenv("SPARTA_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["eval", "anything"])


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "below"):
        assert main(["train", *TINY, "--act", "relu", "--method", "standard", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("sparta: error:") and "\n" not in err
    assert blocker.read_text() == "not a folder"


def test_a_full_disk_is_one_line_and_keeps_earlier_files(tmp_path, capsys, monkeypatch):
    import errno

    from sparta.training import loop

    run = tmp_path / "run"
    assert main(["train", *TINY, "--act", "relu", "--method", "standard", "--out", str(run)]) == 0
    before = (run / "model.safetensors").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(run / "model.safetensors"))

    monkeypatch.setattr(loop, "save_checkpoint", full)
    capsys.readouterr()
    assert main(["train", "--config", str(run), "--epochs", "2", "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sparta: error: No space left on device") and "model.safetensors" in err
    assert (run / "model.safetensors").read_bytes() == before


def test_a_config_json_without_what_decides_the_run_is_refused(tmp_path, capsys):
    """A missing dataset (or model, act, ...) would silently become the default one."""
    settings = json.loads(TrainConfig(out=str(tmp_path / "run")).to_json())
    del settings["dataset"]
    (tmp_path / "config.json").write_text(json.dumps(settings))
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "config.json"), "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err.strip()
    assert "lacks the setting(s) dataset" in err and "\n" not in err
    assert not (tmp_path / "again").exists()
