"""The table that opens results/README.md is what the run records give, and its rules hold."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    ],
)
def test_the_verdict_follows_the_robust_intervals(glance, differences, expected):
    assert glance.verdict(differences) == expected


def test_the_forest_plot_takes_single_seed_rows(tmp_path):
    path = plot_paired_differences(
        {"PGD-20": [("a (3 seeds)", [1.0, 2.0, 0.5]), ("b (1 seed)", [-1.0])], "AutoAttack": [("a (3 seeds)", [0.0])]},
        tmp_path / "forest.png",
        "title",
    )
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
