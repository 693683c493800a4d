"""Shared fixtures: a small model trained once per test session on scikit-learn's digits.

The suite runs with one intra-op thread (and so do the processes it starts): its models
are tiny, and OpenMP's spinning threads slow them down many times on a busy CPU. Without
CUDA, Triton's kernels run under its interpreter (set before they are first imported).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)
if not torch.cuda.is_available():  # the Triton site's kernels run on CPU tensors, interpreted
    os.environ.setdefault("TRITON_INTERPRET", "1")

from sparta.checkpoint import load_checkpoint
from sparta.config import TrainConfig
from sparta.data import load_dataset
from sparta.training.loop import train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def load_script():
    """A script of the repository (scripts/, benchmarks/) imported as a module from its path."""

    def load(relative: str):
        path = ROOT / relative
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
        return module

    return load


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` need a GPU: skipped without one (the GPU check runs them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_config():
    """A TrainConfig small enough for a test (256 digits images, 2 epochs of PGD-2 AT on
    SmallCNN with Sparta), writing to `out`; keyword arguments change any field."""

    def make(out, **changes) -> TrainConfig:
        values = dict(
            out=str(out),
            dataset="digits",
            subset=256,
            model="smallcnn",
            act="sparta",
            method="pgd",
            eps=0.1,
            attack_steps=2,
            epochs=2,
            batch_size=64,
            eval_n=32,
            seed=3,
        )
        return TrainConfig(**{**values, **changes})

    return make


@pytest.fixture(scope="session")
def digits_test():
    x, y = load_dataset("digits", "test")
    return x[:64], y[:64]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A ReLU SmallCNN trained normally on digits: accurate and not robust."""
    out = tmp_path_factory.mktemp("runs") / "digits-relu"
    config = TrainConfig(
        out=str(out),
        dataset="digits",
        model="smallcnn",
        act="relu",
        method="standard",
        eps=0.1,
        epochs=4,
        batch_size=64,
        lr=0.05,
        eval_n=200,
        seed=0,
    )
    return train(config)


@pytest.fixture()
def trained_model(trained_run):
    model, _ = load_checkpoint(trained_run)
    torch.manual_seed(0)
    return model


@pytest.fixture()
def random_sparta():
    """Builds a Sparta with a nonzero threshold (a fresh one's last conv is zero) and a
    perturbed beta, so that comparisons of its paths see every term."""

    def build(channels: int, seed: int = 0, dtype=torch.float32, **options):
        from sparta import Sparta

        torch.manual_seed(seed)
        module = Sparta(channels, **options)
        torch.nn.init.normal_(module.phi.conv2.weight, std=0.5)
        torch.nn.init.normal_(module.phi.conv2.bias, std=0.2)
        with torch.no_grad():
            module.log_beta.add_(torch.randn_like(module.log_beta) * 0.3)
        return module.to(dtype)

    return build
