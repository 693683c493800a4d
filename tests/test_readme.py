"""The README's Python example for a user's own model runs as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _example(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_own_model_example_runs_and_reports_intervals(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example's run directory lands here
    code = _example("### Your own model")
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    x, x_adv = namespace["x"][:64], namespace["x_adv"]
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    printed = capsys.readouterr().out.splitlines()
    records, sites = printed[:3], printed[3:]
    assert [line.split(":")[0] for line in records] == ["clean", "pgd", "cw"]
    assert all("95% CI" in line and "n=100" in line for line in records)
    assert [line.split(":")[0] for line in sites] == ["1", "3"]  # the converted ReLUs, by module name
    pattern = r"beta \d+\.\d\d, T [+-]\d+\.\d\d ± \d+\.\d\d \(over images and positions\), output \d+% from ReLU's$"
    assert all(re.search(pattern, line) for line in sites)
    run_dir = namespace["run_dir"]
    assert json.loads((run_dir / "config.json").read_text())["model"] == "custom"
    assert namespace["meta"]["epoch"] == 1 and (run_dir / "metrics.jsonl").read_text().count("\n") == 1
