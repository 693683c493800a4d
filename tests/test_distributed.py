"""torchrun with 2 CPU processes (gloo) gives what one process gives with the same global batch."""

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from sparta import load_checkpoint

COMMON = "--dataset digits --subset 256 --epochs 2 --batch-size 64 --eval-every 0 --seed 1".split()


def _torchrun(args, tmp_path, succeeds=True):
    """`sparta train ARGS` as two torchrun processes (gloo); asserts it succeeded unless told otherwise."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "sparta", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    if succeeds:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_two_processes_match_one(tmp_path):
    settings = [*COMMON, "--act", "relu", "--method", "standard"]
    single = tmp_path / "single"
    subprocess.run(
        [sys.executable, "-m", "sparta", "train", *settings, "--out", str(single)],
        check=True,
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    double = tmp_path / "ddp"
    _torchrun([*settings, "--out", str(double)], tmp_path)
    a, b = load_file(single / "model.safetensors"), load_file(double / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    # the checkpoint written under DDP loads in a single process, without DDP's "module." prefix
    model, meta = load_checkpoint(double)
    assert meta["world_size"] == 2
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_adversarial_training_under_ddp(tmp_path):
    run = tmp_path / "ddp-pgd"
    ddp_pgd = "--model preact_resnet18 --act sparta --method pgd --attack-steps 1 --subset 64 --epochs 1".split()
    ddp_pgd += "--batch-size 32 --eval-every 1 --eval-n 16".split()
    _torchrun([*COMMON, *ddp_pgd, "--out", str(run)], tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "test_pgd10" in lines[0]


def test_batch_not_divisible_by_processes_is_clear(tmp_path):
    odd = [*COMMON, "--batch-size", "33", "--act", "relu", "--method", "standard", "--out", str(tmp_path / "odd")]
    done = _torchrun(odd, tmp_path, succeeds=False)
    assert done.returncode != 0
    assert "batch size 33 is not divisible by the 2 processes" in done.stderr
