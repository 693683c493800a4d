"""The native site library: built once into its cache, safe to load, and optional.

tests/test_fused_site.py checks the values and gradients of the site it serves.
"""

import json
import logging
import os
import subprocess
import sys

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
    # the library and its checksum file, no scratch left behind
    assert sorted(p.name for p in fresh_cache.iterdir()) == [built.name, built.name + ".sha256"]
    assert built.stat().st_mtime_ns == stamp
    checksum = json.loads(built.with_name(built.name + ".sha256").read_text())
    assert checksum["size"] == built.stat().st_size


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


# Run in a process of its own: loading a truncated library dies of SIGBUS, which must fail
# the test, not end pytest. It loads the library (built with $CC, in $SPARTA_CACHE) and
# compares the default CPU site with the plain reference.
LOAD_AND_COMPARE = """
import logging, torch
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
from sparta import Sparta
from sparta.site import native
torch.manual_seed(0)
module = Sparta(4)
torch.nn.init.normal_(module.phi.conv2.weight, std=0.5)
x = torch.randn(2, 4, 5, 5)
print("native", native.available(x))
got = module(x)
module.fused = False
torch.testing.assert_close(got, module(x))
print("same values")
"""


def load_in_a_new_process(cache, compiler="cc"):
    """(exit status, stdout and stderr) of LOAD_AND_COMPARE run with this cache and compiler."""
    env = {**os.environ, "SPARTA_CACHE": str(cache.parent), "CC": str(compiler)}
    env.pop("SPARTA_NATIVE", None)
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_COMPARE], env=env, capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stdout + done.stderr


def cut_short(library):
    """Truncates the library to 20,000 bytes (half if smaller), in a new file put in its place:
    this process may have the old one mapped, and must not see it shrink."""
    data = library.read_bytes()
    keep = 20_000 if len(data) > 20_000 else len(data) // 2
    short = library.with_name("short")
    short.write_bytes(data[:keep])
    os.replace(short, library)
    return len(data), keep


def test_a_truncated_library_is_rebuilt_not_loaded(compiler, fresh_cache):
    assert native_site.library() is not None
    (built,) = fresh_cache.glob("site-*.so")
    size, short = cut_short(built)
    status, output = load_in_a_new_process(fresh_cache)
    assert status == 0, output
    assert f"{built} is damaged (size {short}, expected {size}); rebuilding" in output
    assert output.count("WARNING") == 1
    assert "native True" in output and "same values" in output
    assert built.stat().st_size == size
    assert native_site._damage(built) is None


@pytest.mark.parametrize(
    "checksum, problem",
    [
        (None, "no checksum file"),  # a library built before the checksum existed
        (b"\x00\xff not a checksum", "its checksum file is unreadable"),
        (b"[1, 2]", "its checksum file is unreadable"),
        (b'{"size": 1, "sha256": "0"}', "size "),
    ],
)
def test_a_library_without_a_matching_checksum_is_rebuilt(
    compiler, fresh_cache, caplog, random_sparta, checksum, problem
):
    assert native_site.library() is not None
    (built,) = fresh_cache.glob("site-*.so")
    sidecar = built.with_name(built.name + ".sha256")
    inode = built.stat().st_ino
    if checksum is None:
        sidecar.unlink()
    else:
        sidecar.write_bytes(checksum)
    native_site.library.cache_clear()
    with caplog.at_level(logging.INFO, logger=native_site.log.name):
        assert native_site.library() is not None
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{built} is damaged ({problem}" in warning and warning.endswith("rebuilding")
    assert built.stat().st_ino != inode  # a new library, put in place whole
    assert native_site._damage(built) is None
    module = random_sparta(4)
    x = torch.randn(2, 4, 5, 5)
    got = module(x)
    module.fused = False
    torch.testing.assert_close(got, module(x))


def test_a_damaged_library_that_cannot_be_rebuilt_falls_back_to_torch_operations(
    compiler, fresh_cache, tmp_path, monkeypatch
):
    """The compiler that built it fails now: the damaged library is still not loaded."""
    wrapper = tmp_path / "cc-that-stops-working"
    wrapper.write_text('#!/bin/sh\nexec cc "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    assert native_site.library() is not None
    (built,) = fresh_cache.glob("site-*.so")
    cut_short(built)
    wrapper.write_text("#!/bin/sh\nexit 1\n")
    status, output = load_in_a_new_process(fresh_cache, wrapper)
    assert status == 0, output
    assert f"{built} is damaged" in output and "could not be built" in output
    assert output.count("WARNING") == 2  # the damage, then the failed rebuild
    assert "native False" in output and "same values" in output


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
