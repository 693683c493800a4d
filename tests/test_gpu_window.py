"""The GPU window script in tiny mode on the CPU: the check, and every block of the queue,
including a block cut off by its deadline that resumes from the tars it sent back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_window.py"
MiB = 2**20


def window(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, cwd=ROOT, timeout=600)


def assert_comes_back(out: Path) -> None:
    """What the GPU machine sends back: at most 8 files, each under 16 MiB, 2 folders deep."""
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= 8, files
    assert all(p.stat().st_size < 16 * MiB for p in files)
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)


def members(out: Path) -> list[str]:
    names = []
    for tar in sorted(out.glob("*.tar")):
        with tarfile.open(tar) as handle:
            names += handle.getnames()
    return names


@pytest.mark.slow
def test_tiny_check_runs_every_step(tmp_path):
    out = tmp_path / "out"
    done = window("check", "--tiny", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (out / "check.md").read_text()
    for step in ("site-errors", "cuda-tests", "train", "train-compile", "resume", "eval", "eval-autoattack", "speed"):
        assert f"| {step} | ok |" in summary, summary
    assert "autoattack" in summary and "Sparta's cost" in summary
    assert "float64 CPU reference" in summary and "| fused | fp32 | channels_last |" in summary
    assert_comes_back(out)
    names = members(out)
    assert "check-runs/defaults/eval.json" in names and "check-runs/logs/train.txt" in names
    assert not [n for n in names if n.endswith(("model.safetensors", "checkpoint.safetensors"))]


@pytest.mark.slow
def test_tiny_queue_resumes_across_windows_and_completes(tmp_path):
    first, second = tmp_path / "results-1", tmp_path / "results-2"
    # Window 1: claim-a, cut off after 3 seconds (the tiny block takes about 10).
    done = window(
        "--results", str(first), "block", "claim-a", "--tiny", "--minutes", "0.05", "--out", str(tmp_path / "w1")
    )
    assert done.returncode == 0, done.stderr
    assert "to be continued" in (tmp_path / "w1" / "claim-a.md").read_text()
    assert_comes_back(tmp_path / "w1")
    # Window 2 starts from what came back only (a fresh checkout plus the unpacked tars).
    assert window("--results", str(second), "unpack", str(tmp_path / "w1")).returncode == 0
    for block in ("claim-a", "ablation", "transfer", "resnet18"):
        out = tmp_path / f"w-{block}"
        done = window("--results", str(second), "block", block, "--tiny", "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert "complete" in (out / f"{block}.md").read_text(), done.stdout
        assert_comes_back(out)
        assert window("--results", str(second), "unpack", str(out)).returncode == 0
    progress = json.loads((second / "claim-a" / "progress.json").read_text())
    assert progress["complete"] and len(progress["windows"]) == 2
    assert (second / "claim-a" / "table.md").is_file() and (second / "claim-a" / "ablation.md").is_file()
    assert (second / "transfer-data" / "table.md").is_file() and (second / "resnet18" / "table.md").is_file()
    # Once complete, only claim-a's seed-0 models stay; no training state.
    weights = sorted(
        str(p.relative_to(second)) for p in second.rglob("*.safetensors") if p.name != "sparta.safetensors"
    )
    assert weights == [
        "claim-a/smallcnn-relu-pgd-seed0/model.safetensors",
        "claim-a/smallcnn-sparta-pgd-seed0/model.safetensors",
    ]
    assert "next: nothing" in window("--results", str(second), "queue").stdout


@pytest.mark.parametrize("accuracy, status", [(0.106, 1), (0.41, 0)])
def test_the_checks_full_size_training_fails_at_chance(tmp_path, accuracy, status, load_script):
    """The check's 1-epoch Sparta training is a failed step when it ended at chance."""
    module = load_script("scripts/gpu_window.py")
    run_dir = tmp_path / "run"
    record = json.dumps({"epoch": 0, "train_acc": accuracy})
    writes_metrics = (
        "import pathlib, sys; out = pathlib.Path(sys.argv[-1]); out.mkdir(); "
        f"(out / 'metrics.jsonl').write_text({record!r} + chr(10))"
    )
    fake_train = [sys.executable, "-c", writes_metrics]  # called with --out RUN_DIR, as sparta train
    runner = module.Runner(tmp_path / "logs", env=dict(os.environ), deadline=float("inf"))
    step = module.left_chance("train", fake_train, run_dir, module.Size(tiny=False), 60)
    assert step(runner) == status
    assert f"training accuracy {100 * accuracy:.1f}%" in (tmp_path / "logs" / "train.txt").read_text()
