"""The table that opens results/README.md is what the run records give, and its rules hold."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import pytest
from scipy import stats

from sparta.report.plots import plot_paired_differences

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def glance(load_script):
    return load_script("scripts/results_glance.py")


def test_the_readme_table_matches_the_records(glance):
    assert glance.main(["--check"]) == 0, "run: python scripts/results_glance.py"


def test_a_changed_number_is_caught(glance, tmp_path):
    readme = tmp_path / "README.md"
    text = (ROOT / "results" / "README.md").read_text()
    assert "+0.01 ± 0.11" in text  # claim (a), Sparta - ReLU, clean: from the five paired seeds
    readme.write_text(text.replace("+0.01 ± 0.11", "+0.51 ± 0.11", 1))
    assert glance.main(["--check", "--readme", str(readme)]) == 1


def test_writing_fills_the_markers_and_draws_the_figure(glance, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# R\n\n{glance.START}\nold\n{glance.END}\n\nrest\n")
    assert glance.main(["--readme", str(readme), "--figure", str(tmp_path / "g.png")]) == 0
    text = readme.read_text()
    assert "old" not in text and text.endswith("rest\n") and "| Sparta − ReLU |" in text
    assert (tmp_path / "g.png").stat().st_size > 10_000
    assert glance.main(["--check", "--readme", str(readme)]) == 0


@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        (
            {"clean": [1, 1, 1], "PGD-20": [1.0, 1.5, 2.0], "AutoAttack": [1.0, 1.2, 1.4]},
            "**ahead** (PGD-20, AutoAttack)",
        ),
        ({"PGD-20": [-1.0, -1.5, -2.0], "AutoAttack": [-1.0, 1.0, 0.0]}, "**behind** (PGD-20)"),
        ({"PGD-20": [-1.0, 1.5, 0.0], "AutoAttack": [-1.0, 1.0, 0.5]}, "level"),
        ({"PGD-20": [1.0, 2.0]}, "running: under 3 paired seeds"),
        ({"clean": [5.0, 6.0, 7.0]}, "running: under 3 paired seeds"),  # clean alone decides nothing
        ({"PGD-20": [2.0, 2.0, 2.0]}, "undecided: every seed gave the same difference"),
        ({"PGD-20": [1.0, 1.5, 2.0], "AutoAttack": [-1.0, -1.5, -2.0]}, "mixed"),
        # AutoAttack lands seeds after PGD-20: the decided metric speaks, the other is named
        ({"PGD-20": [-1.0, 1.5, 0.0, 0.5], "AutoAttack": [3.0]}, "level; AutoAttack on 1 of 3 seeds so far"),
        (
            {"PGD-20": [1.0, 1.5, 2.0], "AutoAttack": [-4.0, -5.0]},
            "**ahead** (PGD-20); AutoAttack on 2 of 3 seeds so far",
        ),
    ],
)
def test_the_verdict_follows_the_robust_intervals(glance, differences, expected):
    assert glance.verdict(differences) == expected


def test_each_difference_says_what_its_intervals_rule_in_and_out(glance):
    comparison = glance.COMPARISONS[0]
    name = f"{comparison.arm} − {comparison.reference}"
    differences = {
        "clean": {0: 9.0, 1: 9.0, 2: 9.0},  # clean is not a robustness verdict: left out
        "PGD-20": {0: 1.0, 1: 1.5, 2: 2.0},  # 1.5 ± 1.24: excludes 0
        "CW-30": {0: -1.0, 1: 1.0, 2: 0.0},  # 0 ± 2.48
        "AutoAttack": {0: -1.0, 1: -1.5},  # two seeds: no interval
    }
    line = glance.bounds_line(comparison, differences)
    assert line == (
        f"- {name} (3 paired seeds): PGD-20 in [+0.26, +2.74]: a gain of at least 0.26 points; "
        "CW-30 in [-2.48, +2.48]: rules out a gain above 2.48 and a loss above 2.48 points."
    )
    behind = glance.bounds_line(comparison, {"PGD-20": {0: -1.0, 1: -1.5, 2: -2.0}})
    assert behind.endswith("PGD-20 in [-2.74, -0.26]: a loss of at least 0.26 points.")
    assert glance.bounds_line(comparison, {"PGD-20": {0: 1.0}}) == f"- {name}: no interval yet (under 3 paired seeds)."


def test_the_forest_plot_takes_single_seed_rows(tmp_path):
    path = plot_paired_differences(
        {"PGD-20": [("a (3 seeds)", [1.0, 2.0, 0.5]), ("b (1 seed)", [-1.0])], "AutoAttack": [("a (3 seeds)", [0.0])]},
        tmp_path / "forest.png",
        "title",
    )
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"


def test_a_wide_interval_of_a_running_row_does_not_set_the_scale():
    from sparta.report.plots import difference_axis_reach
    from sparta.stats import mean_ci

    decided = ("a (3 seeds)", [1.0, 2.0, 0.5])
    running = ("b (2 seeds)", [-3.0, 4.0])  # a t interval of about ±44 points
    reach = difference_axis_reach([decided, running])
    assert mean_ci(decided[1]).high < reach < 10  # the decided row's interval and every dot fit
    assert reach >= 4.0
    assert difference_axis_reach([decided, ("c (3 seeds)", [-3.0, 4.0, 0.0])]) > mean_ci([-3.0, 4.0, 0.0]).high


def test_each_claim_page_carries_its_per_seed_tables(glance):
    """claim (a)'s page holds ReLU's five seeds and Sparta's paired differences, from the records."""
    text = (ROOT / "results" / "claim-a-full.md").read_text()
    block = glance.page_blocks()[ROOT / "results" / "claim-a-full.md"]
    assert block in text
    assert "| ReLU | 83.90 ± 0.09 (83.88, 83.98, 83.80, 83.97, 83.86) |" in block
    assert "| Sparta − ReLU | +0.01 ± 0.11 (-0.04, -0.02, +0.13, -0.08, +0.07) |" in block
    assert block.index("| ReLU |") < block.index("| Sparta |")  # references first


def test_a_page_lists_pure_references_first_then_each_arm_after_its_reference(glance):
    """A reference that is itself compared (Sparta, then its control) keeps its place among the
    arms instead of jumping ahead of them."""

    def compare(arm: str, reference: str):
        return glance.Comparison("(a)", "s", arm, reference, arm, reference, glance.SMALL_B, "cpu", "p.md")

    comparisons = [compare("Sparta", "ReLU"), compare("Sparta 2", "ReLU"), compare("control", "Sparta 2"),
                   compare("Swish", "ReLU"), compare("frozen", "scratch")]  # fmt: skip
    expected = ["ReLU", "scratch", "Sparta", "Sparta 2", "control", "Swish", "frozen"]
    assert list(glance.page_arms(comparisons)) == expected


def test_a_page_only_comparison_stays_off_the_one_screen_table(glance):
    page_only = [c for c in glance.COMPARISONS if not c.glance]
    assert page_only  # claim (c)'s frozen arm with each seed's own source
    table = glance.table(glance.measure())
    block = glance.page_blocks()[ROOT / "results" / page_only[0].details]
    assert f"| {page_only[0].arm} − {page_only[0].reference} |" in block
    assert page_only[0].arm not in table


def _sanity(pgd: float, strong: float, passed: bool = True) -> dict:
    """An eval.json "sanity" entry as `sparta eval --sanity` writes it."""
    settings = {"steps": 20, "strong_steps": 100, "strong_restarts": 3, "square_queries": 1000, "large_eps": 0.5}
    numbers = {
        "gradients": {"zero_fraction": 0.004},
        "eps-sweep": {"pgd@0": 0.9, "pgd@0.1": pgd, "pgd@0.5": 0.0},
        "stronger-pgd": {"pgd": pgd, "strong_pgd": strong},
        "black-box": {"square": 0.8, "white_box": min(pgd, strong)},
    }
    checks = [{"name": name, "passed": passed, "numbers": values} for name, values in numbers.items()]
    return {"eps": 0.1, "n": 100, "passed": passed, "settings": settings, "checks": checks}


def test_the_sanity_table_comes_from_each_runs_record(glance, tmp_path, monkeypatch):
    monkeypatch.setattr(glance, "RESULTS", tmp_path)
    for name, sanity in (("relu-seed0", _sanity(0.71, 0.71)), ("arm-seed0", _sanity(0.74, 0.60, passed=False))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.json").write_text(json.dumps({"results": [], "sanity": sanity}))
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "arm-seed0").symlink_to(tmp_path / "arm-seed0")
    base = glance.COMPARISONS[0]
    arm = dataclasses.replace(base, arm="Arm", arm_runs="arm-seed{seed}", reference_runs="relu-seed{seed}")
    again = dataclasses.replace(arm, arm="Arm again", arm_runs="links/arm-seed{seed}")
    block = glance.sanity_block([arm, again])
    assert "| ReLU | 0 | 71% | 71% | 80% | 0% | 0.4% | pass |" in block
    assert "| Arm | 0 | 74% | 60% | 80% | 0% | 0.4% | **FAIL** |" in block
    assert "Arm again" not in block  # a link to a run already in the table
    page = tmp_path / "claim.md"
    page.write_text(f"# c\n\n{glance.SANITY_START}\n{block.replace('74%', '75%')}{glance.SANITY_END}\n")
    assert glance.update_pages({page: block}, False, glance.SANITY_START, glance.SANITY_END) == [page]


def test_a_changed_page_number_is_caught_and_rewritten(glance, tmp_path):
    page = tmp_path / "claim.md"
    block = "| ReLU | 83.90 ± 0.09 (83.88, 83.98) |\n"
    page.write_text(f"# c\n\n{glance.PAGE_START}\n{block.replace('83.90', '84.90')}{glance.PAGE_END}\ntail\n")
    assert glance.update_pages({page: block}, write=False) == [page]
    assert "84.90" in page.read_text()  # --check writes nothing
    assert glance.update_pages({page: block}, write=True) == [page]
    assert glance.update_pages({page: block}, write=False) == []
    assert page.read_text().endswith(f"{block}{glance.PAGE_END}\ntail\n")
    unmarked = tmp_path / "plain.md"
    unmarked.write_text("no markers\n")
    assert glance.update_pages({unmarked: block}, write=True) == [] and unmarked.read_text() == "no markers\n"


@pytest.mark.parametrize(
    ("seeds", "expected"), [([0, 1, 2, 3, 4], "0-4"), ([0, 2, 3, 7], "0, 2-3, 7"), ([5], "5"), ([], "")]
)
def test_seed_spans_are_compact(glance, seeds, expected):
    assert glance.seed_span(seeds) == expected


def test_the_seeds_column_names_each_metric_where_they_differ(glance):
    same = {"clean": {0: 1.0, 1: 2.0}, "PGD-20": {0: 1.0, 1: 2.0}}
    assert glance.seeds_column(same) == "0-1"
    differ = {"clean": {s: 1.0 for s in range(10)}, "AutoAttack": {s: 1.0 for s in range(5)}, "CW-30": {}}
    assert glance.seeds_column(differ) == "0-9; AutoAttack 0-4"
    differ["PGD-20"] = differ["CW-30"] = differ["clean"]
    assert glance.seeds_column(differ) == "0-9; AutoAttack 0-4"  # the span most metrics share leads
    assert glance.per_seed_cell({0: 1.0, 1: -0.5}, signed=True).endswith("(+1.00, -0.50)")
    assert glance.per_seed_cell({}, signed=False) == "–"


def test_the_page_says_whether_each_frozen_function_stayed_bit_identical(glance, tmp_path):
    """A frozen cell whose function file equals its source's counts as identical; one
    tensor moved by 1e-6 is named as changed; a cell whose source is gone is not checkable."""
    from safetensors.torch import load_file, save_file

    from sparta import build_model
    from sparta.config import TrainConfig
    from sparta.sharing import export_sparta

    source = tmp_path / "source.safetensors"
    export_sparta(build_model("smallcnn", "sparta", num_classes=10, in_channels=1, share="network"), source)
    for seed in range(3):
        run = tmp_path / f"frozen-seed{seed}"
        run.mkdir()
        origin = source if seed < 2 else tmp_path / "lost.safetensors"
        config = TrainConfig(out=str(run), act="sparta", sparta_from=str(origin), freeze_sparta=True)
        (run / "config.json").write_text(config.to_json())
        (run / "eval.json").write_text('{"results": []}')
        tensors = load_file(source)
        if seed == 1:
            name = sorted(tensors)[0]
            tensors[name] = tensors[name] + 1e-6
        save_file(tensors, run / "sparta.safetensors")
    comparison = glance.Comparison(
        "(b)", "s", "frozen", "ReLU", str(tmp_path / "frozen-seed{seed}"), str(tmp_path / "relu-seed{seed}"),
        glance.SMALL_B, "cpu", "p.md",
    )  # fmt: skip
    line = glance.frozen_line(comparison)
    assert "in 1 of 3 cells (seed 0)" in line and "**changed** from its source's in seed 1" in line
    assert "not checkable in seed 2" in line


def test_learning_speed_pairs_each_arms_mean_training_accuracy_over_the_epochs(glance, tmp_path):
    """Per run, the mean of metrics.jsonl's train_acc over the configured epochs; a run with an
    epoch missing has no value; the difference pairs seeds both arms have."""
    import json

    from sparta.config import TrainConfig

    curves = {"arm-seed0": [0.2, 0.6], "arm-seed1": [0.4, 0.8], "ref-seed0": [0.1, 0.5], "ref-seed1": [0.3]}
    for name, accuracies in curves.items():
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(TrainConfig(out=str(run), epochs=2).to_json())
        (run / "eval.json").write_text('{"results": []}')
        lines = [json.dumps({"epoch": e, "train_acc": a}) + "\n" for e, a in enumerate(accuracies)]
        (run / "metrics.jsonl").write_text("".join(lines))
    assert glance.mean_training_accuracy(tmp_path / "arm-seed1") == pytest.approx(60.0)
    assert glance.mean_training_accuracy(tmp_path / "ref-seed1") is None  # one epoch of two
    comparison = glance.Comparison(
        "(c)", "s", "arm", "ref", str(tmp_path / "arm-seed{seed}"), str(tmp_path / "ref-seed{seed}"),
        glance.SMALL_B, "cpu", "p.md",
    )  # fmt: skip
    table = glance.learning_speed([comparison])
    assert "| ref | 30.00 ± n/a (30.00) | 0 |" in table
    assert "| arm | 50.00 ± 127.06 (40.00, 60.00) | 0-1 |" in table  # t(0.975, 1) = 12.71 times 10
    assert "| arm − ref | +10.00 ± n/a (+10.00) | 0 |" in table


def test_two_claims_on_one_setting_each_keep_their_label(glance):
    """Claim (a) on ResNet-20 reads claim (b)'s cells: its row and (b)'s share a setting, and
    each still names its claim; the figure names the network of the (a) row."""
    on_resnet = [c for c in glance.COMPARISONS if c.setting == glance.FULL_B_SETTING]
    assert {c.claim for c in on_resnet} == {"(a)", "(b)"}
    measured = [(c, {"PGD-20": {0: 1.0}}) for c in on_resnet]
    rows = glance.table(measured).splitlines()[2 : 2 + len(on_resnet)]
    assert [row.split(" | ")[0] for row in rows] == ["| (a)", "| (b)", "| "]
    labels = [label for label, _ in glance.panels(measured)["PGD-20 minus reference"]]
    assert labels[0] == "(a, ResNet-20) Sparta from scratch − ReLU (1 seed)"
    assert labels[1].startswith("(b) Sparta frozen from SmallCNN − ReLU")


def test_a_metric_on_fewer_seeds_keeps_the_rows_other_seeds(glance):
    """AutoAttack on one seed of ten must not shrink the row's clean and PGD-20 to that seed:
    each metric keeps its own seeds, the seeds column the most, and a cell on fewer says so."""
    comparison = next(c for c in glance.COMPARISONS if c.claim == "(c)" and c.glance)
    ten = {seed: 0.5 * (seed % 3 - 1) for seed in range(10)}
    row = glance.table([(comparison, {"clean": ten, "PGD-20": ten, "AutoAttack": {0: 1.5}})]).splitlines()[2]
    cells = row.split(" | ")
    values = list(ten.values())
    half = stats.t.ppf(0.975, 9) * statistics.stdev(values) / 10**0.5
    ten_seeds = f"{statistics.mean(values):+.2f} ± {half:.2f}"
    assert cells[3:8] == [
        ten_seeds,
        ten_seeds,
        "+1.50 ± n/a (450, 1 seed)",
        "10",
        "level; AutoAttack on 1 of 3 seeds so far",
    ]
    assert glance._counted({0: 1.0, 1: 2.0}, 10) == "+1.50 ± 6.35 (2 seeds)"
