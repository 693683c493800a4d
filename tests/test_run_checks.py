"""A run directory checked as a whole, and every count of images bounded, before any work.

Each refusal is exit status 2 and one `sparta: error:` line naming the problem, with
nothing trained, evaluated or written; each count above what exists is capped at the test
set with one note. Tiny digits runs, built once for the module.
"""

import json
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file

from sparta import SpartaError, build_model, import_sparta, save_checkpoint
from sparta.checkpoint import load_checkpoint, read_checkpoint_header
from sparta.cli import main
from sparta.config import TrainConfig
from sparta.progress import SpartaWarning
from sparta.training.loop import train

TINY = ["--subset", "128", "--epochs", "1", "--batch-size", "64", "--attack-steps", "2", "--eval-n", "32"]
DIGITS_TEST = 450  # images in digits' test split
CROSS_CNN = ["transfer", "--kind", "cross-cnn"]
CROSS_DATASET = ["transfer", "--kind", "cross-dataset"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"relu": a smallcnn ReLU run, "sparta": a smallcnn Sparta run}, one epoch on 128 digits."""
    root = tmp_path_factory.mktemp("checked-runs")
    made = {}
    for act in ("relu", "sparta"):
        config = TrainConfig(
            out=str(root / act),
            dataset="digits",
            act=act,
            subset=128,
            epochs=1,
            batch_size=64,
            attack_steps=2,
            eval_n=32,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SpartaWarning)  # one epoch on 128 images: near chance
            made[act] = train(config)
    return made


@pytest.fixture()
def copy_run(runs, tmp_path):
    """A fresh copy of one of the module's runs, to damage."""

    def copy(act: str, name: str = "copy"):
        return shutil.copytree(runs[act], tmp_path / name)

    return copy


def refused(capsys, argv, *named):
    """Exit status 2, one `sparta: error:` line on stderr, naming each of `named`."""
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("sparta: error: "), lines
    for part in named:
        assert str(part) in lines[0], (part, lines[0])
    return lines[0]


def ran(capsys, argv):
    """Exit status 0; returns (stdout, stderr)."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out, captured.err


# --------------------------------------------------------------------------------------
# --resume checks the run's files first


def test_resume_rewrites_a_lost_model_file_from_the_state(copy_run, capsys):
    run = copy_run("relu")
    (run / "model.safetensors").unlink()
    out, err = ran(capsys, ["train", "--resume", str(run)])
    assert "trained" in out and "re-wrote" in err and "from checkpoint.safetensors (epoch 1)" in err
    model, meta = load_checkpoint(run)
    assert meta["epoch"] == 1 and meta["config"]["act"] == "relu"
    state = load_file(run / "checkpoint.safetensors")
    assert torch.equal(model.state_dict()["head.5.weight"], state["model.head.5.weight"])


def test_resume_of_a_finished_run_without_its_state_trains_nothing(copy_run, capsys):
    run = copy_run("relu")
    (run / "checkpoint.safetensors").unlink()
    before = (run / "model.safetensors").read_bytes()
    _, err = ran(capsys, ["train", "--resume", str(run)])
    assert "nothing to resume" in err
    assert (run / "model.safetensors").read_bytes() == before and not (run / "checkpoint.safetensors").exists()


def test_resume_of_an_unfinished_run_without_its_state_is_refused(copy_run, capsys):
    run = copy_run("relu")
    (run / "checkpoint.safetensors").unlink()
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "epochs": 3}))
    before = (run / "model.safetensors").read_bytes()
    refused(capsys, ["train", "--resume", str(run)], "checkpoint.safetensors", "is missing", "epoch 1 of 3")
    assert (run / "model.safetensors").read_bytes() == before


def test_resume_without_model_and_state_is_refused(copy_run, capsys):
    run = copy_run("relu")
    (run / "checkpoint.safetensors").unlink()
    (run / "model.safetensors").unlink()
    named = ("records 1 finished epoch", "model.safetensors", "checkpoint.safetensors")
    refused(capsys, ["train", "--resume", str(run)], *named)
    assert not (run / "model.safetensors").exists()


def test_resume_of_a_run_stopped_before_its_first_save_starts_it(copy_run, capsys):
    run = copy_run("relu")
    for name in ("checkpoint.safetensors", "model.safetensors", "metrics.jsonl"):
        (run / name).unlink()
    ran(capsys, ["train", "--resume", str(run)])
    assert read_checkpoint_header(run)["meta"]["epoch"] == 1


# --------------------------------------------------------------------------------------
# A model file of another architecture than config.json names


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "{run}", "--attacks", "clean", "--n", "8"],
        ["report", "{run}", "--out", "{tmp}/report", "--images", "1"],
        ["train", "--resume", "{run}"],
        ["transfer", "--kind", "cross-cnn", "--target-model", "resnet20", "--source", "{run}", "--out", "{tmp}/t"],
    ],
    ids=["eval", "report", "resume", "transfer-source"],
)
def test_a_model_file_of_another_activation_is_refused(runs, copy_run, tmp_path, capsys, command):
    run = copy_run("sparta")
    shutil.copy(runs["relu"] / "model.safetensors", run / "model.safetensors")
    argv = [part.format(run=run, tmp=tmp_path) for part in command]
    refused(capsys, argv, run / "model.safetensors", "a smallcnn with relu", "names a smallcnn with sparta")
    assert not (tmp_path / "report").exists() and not (tmp_path / "t").exists()
    assert not (run / "eval.json").exists()


def test_a_model_file_of_another_model_is_refused(copy_run, capsys):
    run = copy_run("relu")
    save_checkpoint(build_model("resnet20", "relu", dataset="digits"), run / "model.safetensors", epoch=1)
    refused(capsys, ["eval", str(run), "--attacks", "clean"], "a resnet20 with relu", "names a smallcnn with relu")


def test_a_training_state_of_another_model_is_refused_on_resume(runs, copy_run, capsys):
    run = copy_run("relu")
    shutil.copy(runs["sparta"] / "checkpoint.safetensors", run / "checkpoint.safetensors")
    (run / "model.safetensors").unlink()
    refused(capsys, ["train", "--resume", str(run)], run / "checkpoint.safetensors", "does not match the model")
    assert not (run / "model.safetensors").exists()


# --------------------------------------------------------------------------------------
# import_sparta takes a run directory


def test_import_sparta_takes_a_run_directory(runs):
    model = build_model("smallcnn", "sparta", dataset="digits")
    import_sparta(model, runs["sparta"])
    saved = load_file(runs["sparta"] / "sparta.safetensors")
    assert torch.equal(model.block1[1].log_beta, saved["block1.log_beta"])
    assert not any(p.requires_grad for p in model.block1[1].parameters())


def test_import_sparta_names_a_missing_function(runs, tmp_path):
    model = build_model("smallcnn", "sparta", dataset="digits")
    with pytest.raises(SpartaError, match=rf"^{runs['relu']} holds no Sparta function \(sparta.safetensors\)"):
        import_sparta(model, runs["relu"])
    with pytest.raises(SpartaError, match=r"Sparta function file .*nowhere.safetensors does not exist$"):
        import_sparta(model, tmp_path / "nowhere.safetensors")


# --------------------------------------------------------------------------------------
# Grid commands check every argument before the first cell trains


@pytest.mark.parametrize(
    ("command", "named"),
    [
        ([*CROSS_CNN, "--source-dataset", "digits"], ["--kind cross-cnn needs --target-model"]),
        (
            [*CROSS_CNN, "--source-dataset", "digits", "--target-model", "resnet20", "--share", "stage"],
            ["source-smallcnn-digits-seed0/sparta.safetensors (to be trained) has stages", "share='network'"],
        ),
        (
            [*CROSS_DATASET, "--source-dataset", "fashion-mnist", "--target-dataset", "digits", "--subset", "5000"],
            ["subset 5000 is larger than the training set (1347 images)"],
        ),
        (["compare", "--acts", "relu", "--dataset", "digits", "--eval-batch-size", "0"], ["--eval-batch-size"]),
        (
            ["ablate", "--vary", "share=network", "--act-option", "per_channel_beta=true", "--dataset", "digits"],
            ["cannot share per-channel beta"],
        ),
    ],
    ids=["transfer-no-target", "transfer-stages", "transfer-target-subset", "compare-eval-batch", "ablate-variant"],
)
def test_grid_arguments_are_checked_before_anything_trains(tmp_path, capsys, command, named):
    # the command's own flags come last: they override TINY's
    refused(capsys, [command[0], *TINY, "--seeds", "1", "--out", str(tmp_path / "grid"), *command[1:]], *named)
    assert not (tmp_path / "grid").exists()  # no source, no cell: nothing trained


# --------------------------------------------------------------------------------------
# Counts of images: at least 1 (0 for --images), at most what exists


def notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("note: ")]


def test_eval_n_above_the_test_set_is_capped_with_one_note(copy_run, capsys):
    run = copy_run("relu")
    out, err = ran(capsys, ["eval", str(run), "--attacks", "clean", "--n", "100000"])
    assert notes(err) == [f"note: --n 100000 is more than the {DIGITS_TEST} test images of digits; using {DIGITS_TEST}"]
    assert f"n={DIGITS_TEST}" in out
    (record,) = json.loads((run / "eval.json").read_text())["results"]
    assert record["n"] == DIGITS_TEST


def test_report_images_are_capped_at_a_figure_with_one_note(copy_run, tmp_path, capsys):
    run = copy_run("sparta")
    _, err = ran(capsys, ["report", str(run), "--out", str(tmp_path / "report"), "--images", "100000"])
    assert notes(err) == ["note: --images 100000 is more than the 32 rows a threshold-map figure holds; using 32"]
    assert list((tmp_path / "report").glob("thresholds-*.png"))


def test_report_sweep_n_above_the_test_set_is_capped_with_one_note(copy_run, tmp_path, capsys):
    run = copy_run("relu")
    argv = ["report", str(run), "--out", str(tmp_path / "r"), "--eps-sweep", "0", "--n", "100000", "--images", "0"]
    out, err = ran(capsys, argv)
    assert notes(err) == [f"note: --n 100000 is more than the {DIGITS_TEST} test images of digits; using {DIGITS_TEST}"]
    assert f"n={DIGITS_TEST}" in out


def test_train_eval_n_above_the_test_set_is_capped_with_one_note(tmp_path, capsys):
    _, err = ran(capsys, ["train", "--dataset", "digits", *TINY, "--eval-n", "100000", "--out", str(tmp_path / "a")])
    assert notes(err) == [
        f"note: --eval-n 100000 is more than the {DIGITS_TEST} test images of digits; using {DIGITS_TEST}"
    ]
    default = [flag for flag in TINY if flag not in ("--eval-n", "32")]  # the default 1000 means "at most"
    _, err = ran(capsys, ["train", "--dataset", "digits", *default, "--out", str(tmp_path / "b")])
    assert notes(err) == []


def test_grid_n_above_the_test_set_is_capped_with_one_note(tmp_path, capsys):
    argv = ["compare", "--acts", "relu", "--dataset", "digits", *TINY, "--seeds", "1", "--attacks", "clean"]
    _, err = ran(capsys, [*argv, "--n", "100000", "--out", str(tmp_path / "grid")])
    assert notes(err) == [f"note: --n 100000 is more than the {DIGITS_TEST} test images of digits; using {DIGITS_TEST}"]
    (record,) = json.loads(next((tmp_path / "grid").glob("*/eval.json")).read_text())["results"]
    assert record["n"] == DIGITS_TEST


@pytest.mark.parametrize(
    ("command", "named"),
    [
        (["eval", "{run}", "--n", "0"], "--n must be >= 1, got 0"),
        (["eval", "{run}", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["report", "{run}", "--out", "{tmp}/r", "--n", "0"], "--n must be >= 1, got 0"),
        (["report", "{run}", "--out", "{tmp}/r", "--images", "-1"], "--images must be >= 0, got -1"),
        (["train", "--dataset", "digits", "--eval-n", "0", "--out", "{tmp}/r"], "eval n must be >= 1 test image"),
        (["train", "--dataset", "digits", "--subset", "0", "--out", "{tmp}/r"], "subset must be >= 1, got 0"),
        (["compare", "--acts", "relu", "--dataset", "digits", "--n", "0", "--out", "{tmp}/r"], "--n must be >= 1"),
    ],
)
def test_counts_below_one_are_refused_before_any_work(copy_run, tmp_path, capsys, command, named):
    run = copy_run("relu")
    refused(capsys, [part.format(run=run, tmp=tmp_path) for part in command], named)
    assert not (tmp_path / "r").exists() and not (run / "eval.json").exists()


def test_each_checkpoint_records_which_site_implementation_trained_it(runs):
    """A result says which code computed it: the commit, and for Sparta the site's path."""
    from sparta.site import native

    sparta_meta = read_checkpoint_header(runs["sparta"])["meta"]
    expected = "fused-native" if native.library() is not None else "fused-torch"
    assert sparta_meta["sparta_site"] == expected
    assert "git_commit" in sparta_meta
    assert "sparta_site" not in read_checkpoint_header(runs["relu"])["meta"]


def test_site_paths_name_every_path_a_model_takes():
    import torch

    from sparta.sparta_activation import site_paths

    cpu = torch.device("cpu")
    model = build_model("smallcnn", "sparta", num_classes=10, in_channels=1, image_size=16)
    assert site_paths(model, cpu) in ("fused-native", "fused-torch")
    model.block1[1].fused = False  # one site on the reference path
    assert site_paths(model, cpu).startswith("fused-") and site_paths(model, cpu).endswith(",plain")
    assert site_paths(build_model("smallcnn", "sparta", num_classes=10, in_channels=1, phi="depthwise"), cpu) == "plain"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert site_paths(build_model("smallcnn", "sparta", num_classes=10, in_channels=1), cpu) == "plain"
