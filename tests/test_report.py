"""sparta report: report.md with readable PNGs, and the data behind each plot read off the run files."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from scipy import stats

from sparta.checkpoint import load_checkpoint
from sparta.cli import main
from sparta.config import TrainConfig
from sparta.data import load_dataset
from sparta.errors import SpartaError
from sparta.evaluation import evaluate_run
from sparta.report import find_runs, group_runs, robust_accuracy_curves, training_curves
from sparta.report.collect import missing_eps
from sparta.report.thresholds import threshold_maps
from sparta.training.loop import train

EPS = (0.05, 0.1)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Two tiny runs (relu, sparta) side by side, as a compare grid leaves them."""
    root = tmp_path_factory.mktemp("grid")
    for act in ("relu", "sparta"):
        run = train(
            TrainConfig(out=str(root / act), dataset="digits", act=act, subset=128, epochs=2, attack_steps=1, eval_n=32)
        )
        for eps in EPS:
            evaluate_run(run, ["clean", "pgd"], n=32, eps=eps)
    return root


def _records(run_dir) -> list[dict]:
    return json.loads((run_dir / "eval.json").read_text())["results"]


def _fake_run(source, target, records, **changes):
    """A run directory with the source's config (changed) and the given eval records, no model."""
    target.mkdir(parents=True)
    config = {**json.loads((source / "config.json").read_text()), **changes, "out": str(target)}
    (target / "config.json").write_text(json.dumps(config))
    (target / "eval.json").write_text(json.dumps({"results": records}))
    return target


def test_report_links_readable_pngs(grid, tmp_path, capsys):
    before = {act: _records(grid / act) for act in ("relu", "sparta")}
    out = tmp_path / "report"
    assert main(["report", str(grid), "--out", str(out), "--images", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    text = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    # eps, curves, the Sparta run's threshold maps, its sites' learned functions
    assert len(links) == 4 and all(link.endswith(".png") for link in links)
    for link in links:
        image = imread(out / link)
        assert image.ndim == 3 and image.shape[0] >= 300 and image.shape[1] >= 400, link
        assert image[..., :3].var() > 0, f"{link} is blank"
    assert "relu (run relu): no Sparta activation" in text
    for act in ("relu", "sparta"):
        assert len(re.findall(rf"^\| {act} \| (clean|pgd) \|", text, re.M)) == len(before[act])
        assert _records(grid / act) == before[act]  # no --eps-sweep: nothing evaluated


def test_eps_curve_is_what_eval_json_says(grid):
    groups = group_runs(find_runs([grid]))
    assert list(groups) == ["relu", "sparta"]
    curves = robust_accuracy_curves(groups)
    for act, band in curves.items():
        records = _records(grid / act)
        expected = {0.0: next(r["accuracy"] for r in records if r["attack"] == "clean")}
        expected.update({r["eps"]: r["accuracy"] for r in records if r["attack"] == "pgd"})
        assert band.x == pytest.approx(sorted(expected)) and sorted(expected) == [0.0, *EPS]
        assert band.mean == pytest.approx([expected[eps] for eps in sorted(expected)])
        assert band.low == band.mean == band.high and band.count == [1, 1, 1]


def test_seeds_are_averaged_with_a_95_percent_band(grid, tmp_path):
    real = _records(grid / "relu")
    accuracies = {}
    for seed, shift in ((1, 0.25), (2, 0.5)):
        shifted = [{**r, "accuracy": min(1.0, r["accuracy"] + shift)} for r in real]
        accuracies[seed] = shifted
        _fake_run(grid / "relu", tmp_path / f"relu-s{seed}", shifted, seed=seed)
    _fake_run(grid / "relu", tmp_path / "relu-eps0.2", real, eps=0.2)  # another experiment, not a seed
    groups = group_runs(find_runs([grid / "relu", tmp_path]))
    assert {label: len(runs) for label, runs in groups.items()} == {"relu": 3, "relu, eps=0.2": 1}
    band = robust_accuracy_curves(groups)["relu"]
    pgd = [
        [r["accuracy"] for r in records if r["attack"] == "pgd" and r["eps"] == 0.1]
        for records in (real, accuracies[1], accuracies[2])
    ]
    values = np.array(pgd).ravel()
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    at = band.x.index(0.1)
    assert band.count[at] == 3 and band.mean[at] == pytest.approx(values.mean())
    assert (band.low[at], band.high[at]) == pytest.approx((low, high))


def test_training_curves_follow_metrics_jsonl(grid):
    curves = training_curves(group_runs(find_runs([grid])))
    for act in ("relu", "sparta"):
        lines = [json.loads(line) for line in (grid / act / "metrics.jsonl").read_text().splitlines()]
        for metric in ("train_loss", "test_clean", "test_pgd10"):
            assert curves[act][metric].x == [1.0, 2.0]
            assert curves[act][metric].mean == pytest.approx([line[metric] for line in lines])


def test_threshold_maps_are_t_of_the_first_sparta_input(grid):
    model, _ = load_checkpoint(grid / "sparta")
    x, y = load_dataset("digits", "test")
    maps = threshold_maps(model, x[:3], y[:3], eps=0.1)
    assert maps.site == "block1.1" and maps.site_shape == (32, 26, 26) and maps.maps_per_site == 1

    def first_threshold(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            features = model.block1[0](model.normalize(images))
            return model.block1[1].threshold(features)[:, 0].numpy()

    adversarial = torch.from_numpy(maps.adversarial)[:, None]
    assert np.abs(maps.adversarial - maps.images).max() <= 0.1 + 1e-6
    assert maps.images == pytest.approx(x[:3, 0].numpy())
    assert maps.t_clean == pytest.approx(first_threshold(x[:3]), abs=1e-6)
    assert maps.t_adversarial == pytest.approx(first_threshold(adversarial), abs=1e-6)


def test_eps_sweep_evaluates_only_what_is_missing(grid, tmp_path, capsys):
    runs = shutil.copytree(grid, tmp_path / "grid")
    before = {act: _records(runs / act) for act in ("relu", "sparta")}
    out = tmp_path / "report"
    argv = ["report", str(runs), "--out", str(out), "--eps-sweep", "0,0.1,0.15", "--n", "32", "--images", "0"]
    assert main(argv) == 0
    assert len(re.findall(r"^evaluated .* pgd +eps=0\.1500", capsys.readouterr().out, re.M)) == 2
    for act in ("relu", "sparta"):
        after = _records(runs / act)
        assert after[: len(before[act])] == before[act]  # existing records are kept, not redone
        (new,) = after[len(before[act]) :]
        assert (new["attack"], new["eps"], new["n"], new["settings"]["steps"]) == ("pgd", 0.15, 32, 20)
    assert all(missing_eps(run, [0.0, 0.1, 0.15], 32) == [] for run in find_runs([runs]))
    assert "Threshold maps not drawn" in (out / "report.md").read_text()


@pytest.mark.parametrize("name, message", [("notes", "holds no run directory"), ("missing", "is not a directory")])
def test_a_folder_without_runs_is_a_one_line_error(tmp_path, capsys, name, message):
    path = tmp_path / name
    if name == "notes":
        path.mkdir()
        (path / "notes.txt").write_text("not a run")
    with pytest.raises(SpartaError, match=message):
        find_runs([path])
    assert main(["report", str(path), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparta: error:") and message in err and "\n" not in err


def test_an_eps_curve_says_which_test_set_sizes_it_rests_on():
    """A curve that mixes n names each n with its eps in the legend; a uniform one names its n."""
    from sparta.report.collect import Run
    from sparta.report.plots import _sizes_note

    def run(records):
        return Run("r", TrainConfig(), [], records)

    records = [
        {"attack": "clean", "eps": 0.0, "n": 500, "accuracy": 0.8},
        {"attack": "pgd", "eps": 0.1, "n": 500, "accuracy": 0.6},
        {"attack": "pgd", "eps": 0.2, "n": 200, "accuracy": 0.3},
    ]
    band = robust_accuracy_curves({"relu": [run(records)]})["relu"]
    assert band.x == [0.0, 0.1, 0.2] and band.sizes == [500, 500, 200]
    assert _sizes_note(band) == ", n varies: 500 at ε 0, 0.1; 200 at ε 0.2"
    uniform = robust_accuracy_curves({"relu": [run(records[:2])]})["relu"]
    assert _sizes_note(uniform) == ", n = 500"


def test_each_eps_point_is_the_record_on_the_most_images_under_the_record_key():
    """Records of one eps (to 8 decimals) are one point; the one on the most images wins,
    the latest of equal keys; eps 0 is the clean record; missing_eps asks the same question."""
    from sparta.report.collect import Run, latest_records, records_by_eps

    records = [
        {"attack": "clean", "eps": 0.0, "n": 500, "accuracy": 0.8},
        {"attack": "pgd", "eps": 0.1, "n": 500, "accuracy": 0.6},
        {"attack": "pgd", "eps": 0.1 + 1e-10, "n": 200, "accuracy": 0.5},
        {"attack": "pgd", "eps": 0.1, "n": 500, "accuracy": 0.55},
        {"attack": "cw", "eps": 0.1, "n": 1000, "accuracy": 0.1},
    ]
    run = Run("r", TrainConfig(), [], records)
    assert latest_records(run) == [records[0], records[4], records[2], records[3]]
    assert records_by_eps(run) == {0.0: records[0], 0.1: records[3]}
    assert missing_eps(run, [0.0, 0.1 + 1e-10, 0.2], 500) == [0.2]
    assert missing_eps(run, [0.0, 0.1], 501) == [0.0, 0.1]


def test_site_summaries_tell_a_relu_like_site_from_a_swish_like_one():
    """beta large with T = 0 is ReLU (nothing from ReLU, nothing negative passed); beta = 1
    with T = 0 is Swish-1, whose figures follow from x * sigmoid(x) directly."""
    from sparta.models import build_model
    from sparta.report.sites import site_summaries

    torch.manual_seed(0)
    x = torch.rand(8, 1, 28, 28)
    sharp = site_summaries(build_model("smallcnn", "sparta", 10, 1, image_size=28, beta0=1e4), x)
    assert [s.site for s in sharp] == ["block1.1", "block1.3", "block2.1", "block2.3"]  # the 2-D head is left out
    assert all(s.threshold_sd == 0 and s.from_relu < 1e-3 and s.negative_passed < 1e-3 for s in sharp)
    model = build_model("smallcnn", "sparta", 10, 1, image_size=28, beta0=1.0).eval()
    soft = site_summaries(model, x)
    first = model.block1[0](model.normalize(x))  # block1.1's input
    relu = first.clamp_min(0).sum()
    swish = first * torch.sigmoid(first)
    assert soft[0].beta == pytest.approx(1.0)
    assert soft[0].from_relu == pytest.approx(float((swish - first.clamp_min(0)).abs().sum() / relu), rel=1e-4)
    assert soft[0].negative_passed == pytest.approx(float(-swish[first < 0].sum() / relu), rel=1e-4)
    model.train()
    assert site_summaries(model, x) == soft and model.training  # measured in eval mode, mode kept


def test_the_drawn_gate_is_what_a_site_with_a_constant_threshold_computes():
    """gate_curve(x, beta, T) is Sparta's own output once phi gives T everywhere: the curves
    of the report's figure are the activation, not a look-alike."""
    from sparta.report.sites import gate_curve
    from sparta.sparta_activation import Sparta

    site = Sparta(4, beta0=2.2).eval()
    with torch.no_grad():
        site.phi.conv2.bias.fill_(-0.125)  # conv2's weight starts at 0: T = -0.125 at every position
    x = torch.linspace(-3, 3, 4 * 5 * 5, dtype=torch.float64).reshape(1, 4, 5, 5)
    with torch.no_grad():
        expected = site.double()(x).numpy().ravel()
        beta = float(site.beta)
    assert beta == pytest.approx(2.2)
    np.testing.assert_allclose(gate_curve(x.numpy().ravel(), beta, -0.125), expected, rtol=1e-12, atol=1e-15)
    assert np.allclose(gate_curve(np.array([-2.0, 0.0, 2.0]), 1e4, 0.0), [0.0, 0.0, 2.0])  # beta large: ReLU


def test_the_gates_figure_takes_many_sites_and_several_groups(tmp_path):
    from sparta.report.plots import plot_site_gates
    from sparta.report.sites import SiteSummary

    def sites(count, t):
        return [SiteSummary(f"s{i}", 2.0, t + 0.01 * i, 0.05, 1.2, 0.2, 0.1) for i in range(count)]

    groups = {"source": [sites(4, -0.1), sites(4, -0.2)], "resnet20": [sites(19, 0.1)]}
    path = plot_site_gates(groups, tmp_path / "g.png")
    image = imread(path)
    assert image.shape[1] > image.shape[0] and image[..., :3].var() > 0


def test_report_says_what_the_sparta_sites_learned(grid, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(grid), "--out", str(out), "--images", "0"]) == 0
    text = (out / "report.md").read_text()
    section = text.split("## What the Sparta sites learned")[1].split("## Latest evaluation records")[0]
    assert "### sparta (mean over 1 seed(s), then their range)" in section
    assert len([line for line in section.splitlines() if line.startswith("| block")]) == 4
    assert "No Sparta site in: relu." in section
    assert "![the learned functions of the Sparta sites](sparta_gates.png)" in section
    assert (out / "sparta_gates.png").is_file()


def test_frozen_cells_of_several_seeds_group_by_what_their_function_came_from(grid, tmp_path):
    """Each seed of a transfer imports the function of its own source run; the cells form one
    group named by the source's activation, model and dataset, not by a file path, and a
    source trained otherwise (eps 0.2) makes a group of its own, labelled by what differs."""
    real = _records(grid / "sparta")
    for seed in (0, 1):
        source = _fake_run(grid / "sparta", tmp_path / "sources" / f"source-seed{seed}", real, seed=seed)
        (source / "sparta.safetensors").write_bytes(b"")  # only its folder is read
        _fake_run(grid / "sparta", tmp_path / "cells" / f"frozen-seed{seed}", real, seed=seed,
                  sparta_from=str(source / "sparta.safetensors"), freeze_sparta=True)  # fmt: skip
    stronger = _fake_run(grid / "sparta", tmp_path / "sources" / "source-eps0.2", real, eps=0.2)
    _fake_run(grid / "sparta", tmp_path / "cells" / "frozen-eps0.2", real,
              sparta_from=str(stronger / "sparta.safetensors"), freeze_sparta=True)  # fmt: skip
    loose = tmp_path / "loose.safetensors"
    _fake_run(grid / "sparta", tmp_path / "cells" / "frozen-loose", real, sparta_from=str(loose), freeze_sparta=True)
    groups = group_runs(find_runs([grid / "sparta", tmp_path / "cells"]))
    assert {label: len(runs) for label, runs in groups.items()} == {
        "sparta": 1,
        "sparta, frozen, function of sparta smallcnn on digits, source eps=0.1": 2,
        "sparta, frozen, function of sparta smallcnn on digits, source eps=0.2": 1,
        "sparta, frozen, function of loose.safetensors": 1,
    }
