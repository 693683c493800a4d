"""The native site library: built once into its cache, safe to load, and optional.

tests/test_fused_site.py checks the values and gradients of the site it serves.
"""

import logging

import pytest
import torch

from sparta import Sparta
from sparta.site import native as native_site


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty library cache; the process's library is looked up again before and after."""
    monkeypatch.setenv("SPARTA_CACHE", str(tmp_path))
    native_site.library.cache_clear()
    yield tmp_path / "native"
    native_site.library.cache_clear()


@pytest.fixture
def compiler():
    if native_site.library() is None:
        pytest.skip("no working C compiler: the native passes cannot be built")


def test_the_library_is_built_once_and_then_loaded_from_the_cache(compiler, fresh_cache):
    assert native_site.library() is not None
    (built,) = fresh_cache.glob("site-*.so")
    stamp = built.stat().st_mtime_ns
    native_site.library.cache_clear()
    assert native_site.library() is not None
    assert [p.name for p in fresh_cache.iterdir()] == [built.name]  # no scratch left behind
    assert built.stat().st_mtime_ns == stamp


def test_loading_it_leaves_denormals_alone(compiler):
    """Linked with -ffast-math, gcc's crtfastmath.o would flush subnormals to zero process-wide."""
    assert native_site.library() is not None
    tiny = torch.tensor([1e-39], dtype=torch.float32) * 1.0
    assert tiny.item() != 0.0


def test_a_broken_compiler_falls_back_to_torch_operations(fresh_cache, monkeypatch, caplog, random_sparta):
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    with caplog.at_level(logging.WARNING, logger="sparta.native_site"):
        assert native_site.library() is None
    assert "could not be built" in caplog.text
    assert not list(fresh_cache.glob("site-*.so"))
    module = random_sparta(4)
    x = torch.randn(2, 4, 5, 5)
    assert not native_site.available(x)
    module.fused = False
    expected = module(x)
    module.fused = "fused"
    torch.testing.assert_close(module(x), expected)


def test_a_compiler_without_openmp_still_builds_it(compiler, fresh_cache, monkeypatch, tmp_path, random_sparta):
    """Apple's clang has no -fopenmp: the library is built without threads instead."""
    plain_cc = tmp_path / "cc-without-openmp"
    plain_cc.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && exit 1; done\nexec cc "$@"\n')
    plain_cc.chmod(0o755)
    monkeypatch.setenv("CC", str(plain_cc))
    assert native_site.library() is not None
    module = random_sparta(4)
    x = torch.randn(2, 4, 5, 5)
    got = module(x)
    module.fused = False
    torch.testing.assert_close(got, module(x))


def test_it_can_be_switched_off(fresh_cache, monkeypatch):
    monkeypatch.setenv("SPARTA_NATIVE", "0")
    assert native_site.library() is None
    assert not native_site.available(torch.zeros(1, 2, 3, 3))


def test_other_dtypes_use_torch_operations(compiler):
    assert native_site.available(torch.zeros(1, 2, 3, 3))
    assert native_site.available(torch.zeros(1, 2, 3, 3, dtype=torch.float64))
    assert not native_site.available(torch.zeros(1, 2, 3, 3, dtype=torch.bfloat16))


def test_pooling_counts_ties_for_the_max(compiler):
    x = torch.tensor([[[[1.0, 2.0]], [[1.0, 5.0]], [[0.5, 5.0]]]])  # 1 x 3 x 1 x 2
    pooled, ties = native_site.pool(x)
    torch.testing.assert_close(pooled[0, 0], x[0].mean(dim=0))
    torch.testing.assert_close(pooled[0, 1], x[0].amax(dim=0))
    assert ties.flatten().tolist() == [2.0, 2.0]


def test_two_threads_give_the_single_thread_result(compiler, random_sparta):
    module = random_sparta(8, groups=2, per_channel_beta=True)
    x = torch.randn(6, 8, 9, 9)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            xi = x.clone().requires_grad_(True)
            module.zero_grad(set_to_none=True)
            module(xi).square().sum().backward()
            results.append([xi.grad, *(p.grad for p in module.parameters())])
    finally:
        torch.set_num_threads(before)
    for one, two in zip(*results):
        torch.testing.assert_close(two, one, rtol=1e-5, atol=1e-5)


def test_the_native_passes_serve_the_default_cpu_site(compiler, monkeypatch, random_sparta):
    calls = []
    real_gate = native_site.gate
    monkeypatch.setattr(native_site, "gate", lambda *args: calls.append(1) or real_gate(*args))
    module = random_sparta(6)
    assert isinstance(module, Sparta) and module.fused is None
    x = torch.randn(4, 6)  # after a Linear layer: a 1 x 1 map
    got = module(x)
    module.fused = False
    torch.testing.assert_close(got, module(x))
    assert calls == [1]
