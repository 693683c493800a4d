"""benchmarks/site_errors.py: every path within tolerance of the float64 reference, and a wrong one caught."""

from __future__ import annotations

import pytest
import torch

from sparta import site


@pytest.fixture(scope="module")
def site_errors(load_script):
    return load_script("benchmarks/site_errors.py")


def test_the_cpu_paths_are_within_tolerance_and_the_table_says_so(site_errors, tmp_path, monkeypatch):
    monkeypatch.setattr(site_errors, "SHAPES", {"conv": (2, 8, 5, 5), "1x1": (2, 8, 1, 1)})
    paths = "plain,fused,triton" if site.triton_runs_on(torch.zeros(1)) else "plain,fused"
    out = tmp_path / "errors.md"
    assert (
        site_errors.main(["--device", "cpu", "--paths", paths, "--out", str(out), "--json", str(tmp_path / "e.json")])
        == 0
    )
    table = out.read_text()
    assert table.count("| yes |") == 8 * len(paths.split(",")) and "NO" not in table


def test_a_path_one_percent_off_is_flagged(site_errors, tmp_path, monkeypatch):
    monkeypatch.setattr(site_errors, "SHAPES", {"conv": (2, 8, 5, 5)})
    real = site.FAST_SITES["fused"]
    monkeypatch.setitem(site.FAST_SITES, "fused", lambda *args: real(*args) * 1.01)
    out = tmp_path / "errors.md"
    assert site_errors.main(["--device", "cpu", "--paths", "fused", "--out", str(out)]) == 1
    assert out.read_text().count("| NO |") == 2  # fp32, both layouts; bf16's tolerance is wider


def test_an_unknown_path_is_refused_naming_the_choices(site_errors, capsys):
    with pytest.raises(SystemExit):
        site_errors.main(["--device", "cpu", "--paths", "cuda"])
    assert "triton" in capsys.readouterr().err
