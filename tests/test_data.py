"""Tests for sparta.data: real on-disk formats written small, every error path, no network."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest import MonkeyPatch

import sparta.data as data_module
from sparta.data import (
    DATASETS,
    Download,
    dataset_info,
    dataset_root,
    download_dataset,
    load_dataset,
)
from sparta.errors import DataError
from sparta.training.loader import AUGMENTATIONS

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: MonkeyPatch) -> None:
    """A developer's own SPARTA_DATA must not leak into the tests."""
    monkeypatch.delenv("SPARTA_DATA", raising=False)


# ---------------------------------------------------------------------------------------
# Writers for the real formats, independent of the code under test


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x0800 | array.ndim  # unsigned byte data
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_file(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def write_mnist(folder: Path, n: int = 5, *, gz: bool = True, prefix: str = "train") -> tuple[np.ndarray, np.ndarray]:
    images = RNG.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, 10, size=n, dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_file(folder / f"{prefix}-images-idx3-ubyte{ext}", idx_bytes(images))
    write_file(folder / f"{prefix}-labels-idx1-ubyte{ext}", idx_bytes(labels))
    return images, labels


def cifar_rows(n: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_pickle(path: Path, obj: object, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------------------------------
# Registry


def test_registry_has_all_names_with_consistent_stats() -> None:
    assert set(DATASETS) == {"fashion-mnist", "mnist", "digits", "cifar10", "cifar100", "svhn"}
    for name in DATASETS:
        spec = dataset_info(name)
        assert spec is DATASETS.get(name) and spec.name == name
        assert len(spec.mean) == len(spec.std) == spec.channels
        assert set(spec.files) == {"train", "test"}
        assert spec.augment in AUGMENTATIONS
    assert dataset_info("cifar100").num_classes == 100
    assert dataset_info("svhn").image_size == 32
    # flips suit natural images, not digits
    assert [dataset_info(n).augment for n in ("cifar10", "svhn", "mnist")] == ["crop-flip", "crop", "none"]


@pytest.mark.parametrize("call", [load_dataset, dataset_info, download_dataset])
def test_unknown_dataset(call) -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'imagenet'; choose from: .*mnist"):
        call("imagenet")


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="split 'valid'"):
        load_dataset("mnist", "valid", root=tmp_path)


# ---------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split,prefix", [("train", "train"), ("test", "t10k")])
def test_idx_round_trip(tmp_path: Path, gz: bool, split: str, prefix: str) -> None:
    images, labels = write_mnist(tmp_path, n=7, gz=gz, prefix=prefix)
    x, y = load_dataset("mnist", split, root=tmp_path)
    assert x.shape == (7, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (7,) and y.dtype == torch.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert torch.equal((x * 255).round().to(torch.uint8)[:, 0], torch.from_numpy(images))
    assert y.tolist() == labels.tolist()


def test_missing_file_names_path_and_download_command(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in message
    assert 'run "sparta download mnist"' in message and "\n" not in message


def test_truncated_idx(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    with pytest.raises(DataError, match="truncated") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(path) in str(info.value)


def test_wrong_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    labels_as_images = (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes()
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(labels_as_images)
    with pytest.raises(DataError, match="magic") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(path) in str(info.value)


def test_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path, n=5)
    path = write_file(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataError, match="4 labels for 5 images") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(path) in str(info.value)


def test_idx_with_no_images(tmp_path: Path) -> None:
    write_mnist(tmp_path, n=0)
    with pytest.raises(DataError, match="holds no images") as info:
        load_dataset("mnist", root=tmp_path)
    assert "train-images-idx3-ubyte" in str(info.value)


def test_label_out_of_range(tmp_path: Path) -> None:
    write_mnist(tmp_path, n=3)
    path = write_file(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.array([0, 10, 2])))
    with pytest.raises(DataError, match=r"0\.\.9") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(path) in str(info.value)


def test_wrong_image_size(tmp_path: Path) -> None:
    write_mnist(tmp_path, n=2)
    path = write_file(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((2, 27, 27))))
    with pytest.raises(DataError, match="shape") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(path) in str(info.value)


def test_corrupt_gzip(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00 this is not deflate data at all")
    with pytest.raises(DataError, match="corrupt") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(path) in str(info.value)


def _load_or_data_error(folder: Path) -> None:
    try:
        x, y = load_dataset("mnist", root=folder)
    except DataError:
        return
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape[1:] == (1, 28, 28) and len(x) == len(y)
    assert (y >= 0).all() and (y < 10).all()


def _valid_images() -> bytes:
    return idx_bytes(np.arange(2 * 28 * 28, dtype=np.uint32).reshape(2, 28, 28) % 256)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    write_file(folder / "train-labels-idx1-ubyte", idx_bytes(np.array([3, 4], np.uint8)))
    return folder


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=2000), gz=st.booleans())
def test_fuzz_random_bytes(fuzz_dir: Path, data: bytes, gz: bool) -> None:
    for stale in fuzz_dir.glob("train-images*"):
        stale.unlink()
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    (fuzz_dir / name).write_bytes(data)
    _load_or_data_error(fuzz_dir)


@settings(max_examples=50, deadline=None)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 2000)),
    gz=st.booleans(),
)
def test_fuzz_mutated_idx(fuzz_dir: Path, edits: list[tuple[int, int]], cut: int | None, gz: bool) -> None:
    for stale in fuzz_dir.glob("train-images*"):
        stale.unlink()
    payload = _valid_images()
    data = bytearray(gzip.compress(payload) if gz else payload)
    for position, value in edits:
        data[position % len(data)] = value
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    (fuzz_dir / name).write_bytes(bytes(data[:cut]))
    _load_or_data_error(fuzz_dir)


def test_sparta_data_env_is_honoured(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    _images, _ = write_mnist(tmp_path / "mnist", n=3)
    monkeypatch.setenv("SPARTA_DATA", str(tmp_path))
    assert dataset_root("mnist") == tmp_path / "mnist"
    x, _ = load_dataset("mnist")
    assert len(x) == 3
    assert dataset_root("mnist", root="/elsewhere") == Path("/elsewhere")  # explicit root wins


def test_default_roots(monkeypatch: MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert dataset_root("cifar10") == tmp_path / ".cache" / "sparta" / "cifar10"
    assert dataset_root("fashion-mnist") == FASHION_DIR


# ---------------------------------------------------------------------------------------
# CIFAR


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_round_trip_and_plane_order(tmp_path: Path, protocol: int) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    rows = [cifar_rows(2) for _ in range(5)]
    rows[0][0, :1024], rows[0][0, 1024:2048], rows[0][0, 2048:] = 10, 20, 30  # R, G, B planes
    for i, data in enumerate(rows, start=1):
        batch = {b"batch_label": b"x", b"labels": [i, 9 - i], b"data": data, b"filenames": []}
        write_pickle(folder / f"data_batch_{i}", batch, protocol)
    write_pickle(folder / "test_batch", {b"labels": [7], b"data": cifar_rows(1)}, protocol)

    x, y = load_dataset("cifar10", root=tmp_path)
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]
    assert torch.equal((x[0] * 255).round()[:, 5, 7], torch.tensor([10.0, 20.0, 30.0]))
    expected = np.concatenate(rows).reshape(10, 3, 32, 32)
    assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(expected))
    assert load_dataset("cifar10", "test", root=tmp_path)[1].tolist() == [7]


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    data = cifar_rows(3)
    for split in ("train", "test"):
        batch = {b"data": data, b"fine_labels": [0, 57, 99], b"coarse_labels": [1, 2, 3]}
        write_pickle(folder / split, batch)
    x, y = load_dataset("cifar100", "test", root=tmp_path)
    assert x.shape == (3, 3, 32, 32)
    assert y.tolist() == [0, 57, 99]
    assert torch.equal((x * 255).round().to(torch.uint8).reshape(3, -1), torch.from_numpy(data))


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "cifar-100-python" / "train"
    write_pickle(path, {b"data": _Evil(marker), b"fine_labels": [0]})
    with pytest.raises(DataError, match="forbidden global") as info:
        load_dataset("cifar100", root=tmp_path)
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "batch",
    [
        [1, 2, 3],
        {b"labels": [1]},
        {b"data": np.zeros((1, 100), np.uint8), b"labels": [1]},
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]},
        {b"data": np.zeros((1, 3072), np.uint8), b"labels": ["cat"]},
    ],
)
def test_cifar_bad_structure(tmp_path: Path, batch: object) -> None:
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_pickle(path, batch)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", "test", root=tmp_path)
    assert str(path) in str(info.value)


def test_cifar_truncated_pickle(tmp_path: Path) -> None:
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_pickle(path, {b"data": cifar_rows(2), b"labels": [1, 2]})
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="corrupt") as info:
        load_dataset("cifar10", "test", root=tmp_path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------
# SVHN


def test_svhn_round_trip_maps_10_to_0(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, size=(32, 32, 3, 4), dtype=np.uint8)
    digits = np.array([[10], [1], [9], [10]], np.uint8)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": pixels, "y": digits})
    x, y = load_dataset("svhn", root=tmp_path)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [0, 1, 9, 0] and y.dtype == torch.int64
    got = (x * 255).round().to(torch.uint8).numpy()
    assert got[2, 1, 5, 7] == pixels[5, 7, 1, 2]
    assert np.array_equal(got, pixels.transpose(3, 2, 0, 1))


@pytest.mark.parametrize("content", [b"not a mat file" * 20, b""])
def test_svhn_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_dataset("svhn", "test", root=tmp_path)
    assert str(path) in str(info.value)


def test_svhn_label_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "test_32x32.mat"
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]])})
    with pytest.raises(DataError, match=r"1\.\.10") as info:
        load_dataset("svhn", "test", root=tmp_path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------
# digits


def test_digits_split_is_stable_disjoint_and_complete() -> None:
    from sklearn.datasets import load_digits

    train_x, train_y = load_dataset("digits", "train", root="/nonexistent")
    test_x, test_y = load_dataset("digits", "test")
    assert train_x.shape == (1347, 1, 28, 28) and test_x.shape == (450, 1, 28, 28)
    assert train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    assert 0.0 <= train_x.min() and train_x.max() <= 1.0
    again_x, again_y = load_dataset("digits", "train")
    assert torch.equal(train_x, again_x) and torch.equal(train_y, again_y)
    # Train and test together are the whole data set, each (image, label) once: a partition.
    digits = load_digits()
    small = torch.from_numpy(digits.images / 16.0).float().unsqueeze(1)
    everything = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)

    def rows(images: torch.Tensor, labels) -> list[bytes]:
        return sorted(x.numpy().tobytes() + bytes([int(y)]) for x, y in zip(images, labels))

    together = rows(torch.cat([train_x, test_x]), torch.cat([train_y, test_y]))
    assert together == rows(everything, digits.target)
    # Stratified: every class appears in test in about the same proportion as in train.
    assert torch.bincount(test_y, minlength=10).min() >= 40


# ---------------------------------------------------------------------------------------
# The real Fashion-MNIST (Debian package dataset-fashion-mnist)


def test_real_fashion_mnist() -> None:
    if not FASHION_DIR.is_dir():
        pytest.skip(f"{FASHION_DIR} not installed")
    x, y = load_dataset("fashion-mnist", "train")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(torch.bincount(y), torch.full((10,), 6000))
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert abs(x.mean().item() - dataset_info("fashion-mnist").mean[0]) < 1e-3
    x, y = load_dataset("fashion-mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)


# ---------------------------------------------------------------------------------------
# Downloads, with file:// URLs so no network is needed


def _with_downloads(monkeypatch: MonkeyPatch, name: str, *downloads: Download) -> None:
    spec, real = dataclasses.replace(dataset_info(name), downloads=downloads), data_module.dataset_info
    monkeypatch.setattr(data_module, "dataset_info", lambda wanted: spec if wanted == name else real(wanted))


def _idx_sources(tmp_path: Path) -> list[tuple[str, bytes]]:
    source = tmp_path / "source"
    write_mnist(source, n=2, prefix="train")
    write_mnist(source, n=1, prefix="t10k")
    return [(p.name, p.read_bytes()) for p in sorted(source.iterdir())]


def test_download_verifies_md5_and_writes_files(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    sources = _idx_sources(tmp_path)
    base = (tmp_path / "source").as_uri() + "/"
    _with_downloads(monkeypatch, "mnist", *(Download(base + n, md5_of(d)) for n, d in sources))
    target = tmp_path / "data"
    paths = download_dataset("mnist", root=target)
    assert len(paths) == 4 and all(p.parent == target for p in paths)
    assert sorted(p.name for p in target.iterdir()) == [n for n, _ in sources]
    assert load_dataset("mnist", root=target)[0].shape == (2, 1, 28, 28)


def test_download_wrong_md5_leaves_nothing(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    name, _ = _idx_sources(tmp_path)[0]
    url = (tmp_path / "source" / name).as_uri()
    _with_downloads(monkeypatch, "mnist", Download(url, "0" * 32))
    target = tmp_path / "data"
    with pytest.raises(DataError, match="checksum mismatch") as info:
        download_dataset("mnist", root=target)
    assert str(target / name) in str(info.value)
    assert list(target.iterdir()) == []


def test_download_failure_says_where_to_put_file(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    url = (tmp_path / "nowhere" / "train_32x32.mat").as_uri()
    _with_downloads(monkeypatch, "svhn", Download(url, "0" * 32))
    with pytest.raises(DataError, match="could not download") as info:
        download_dataset("svhn", root=tmp_path / "data")
    assert str(tmp_path / "data" / "train_32x32.mat") in str(info.value)
    assert list((tmp_path / "data").iterdir()) == []


def test_download_keeps_files_already_present(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    write_mnist(tmp_path, n=1, gz=False, prefix="train")
    write_mnist(tmp_path, n=1, gz=False, prefix="t10k")
    unreachable = (tmp_path / "nowhere").as_uri() + "/"
    names = [p.name + ".gz" for p in tmp_path.iterdir()]  # the registry names the .gz forms
    _with_downloads(monkeypatch, "mnist", *(Download(unreachable + n, "0" * 32) for n in names))
    assert len(download_dataset("mnist", root=tmp_path)) == 4


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_download_extracts_cifar_archive(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    batch = pickle.dumps({b"data": cifar_rows(2), b"labels": [3, 4]}, protocol=2)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    archive = _tar_gz({f"cifar-10-batches-py/{n}": batch for n in names})
    source = tmp_path / "cifar-10-python.tar.gz"
    source.write_bytes(archive)
    _with_downloads(monkeypatch, "cifar10", Download(source.as_uri(), md5_of(archive)))
    target = tmp_path / "data"
    assert len(download_dataset("cifar10", root=target)) == 6
    x, y = load_dataset("cifar10", root=target)
    assert x.shape == (10, 3, 32, 32) and y.tolist() == [3, 4] * 5


@pytest.mark.parametrize("evil", ["../escape", "/abs/escape", "cifar-10-batches-py/../../escape"])
def test_download_rejects_unsafe_archive(tmp_path: Path, monkeypatch: MonkeyPatch, evil: str) -> None:
    archive = _tar_gz({"cifar-10-batches-py/test_batch": b"x", evil: b"boom"})
    source = tmp_path / "cifar-10-python.tar.gz"
    source.write_bytes(archive)
    _with_downloads(monkeypatch, "cifar10", Download(source.as_uri(), md5_of(archive)))
    target = tmp_path / "deep" / "data"
    with pytest.raises(DataError, match="unsafe member"):
        download_dataset("cifar10", root=target)
    assert not (tmp_path / "deep" / "escape").exists() and not (tmp_path / "escape").exists()
    assert not (target / "cifar-10-batches-py").exists()


def test_download_command_prints_the_files_or_says_there_are_none(
    tmp_path: Path, monkeypatch: MonkeyPatch, capsys
) -> None:
    from sparta.cli import main

    sources = _idx_sources(tmp_path)
    base = (tmp_path / "source").as_uri() + "/"
    _with_downloads(monkeypatch, "mnist", *(Download(base + n, md5_of(d)) for n, d in sources))
    assert main(["download", "mnist", "--data-root", str(tmp_path / "data")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert sorted(Path(line).name for line in printed) == [n for n, _ in sources]
    assert main(["download", "digits"]) == 0
    assert capsys.readouterr().out == "digits: no files to download (it comes with an installed package)\n"
