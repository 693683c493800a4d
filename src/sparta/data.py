"""Image classification datasets as tensors: one registry, strict readers, no surprise downloads.

Every reader parses a real on-disk format with numpy (no per-byte Python loops), checks it
against its own header and the registry entry, and converts to torch once. Anything wrong
with a file becomes a one-line ``DataError`` naming the file, so the CLI can report it
without a traceback. ``load_dataset`` never touches the network; ``download_dataset`` does,
and only writes a file once its md5 matches the published one.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import http.client
import math
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F

from sparta.errors import DataError
from sparta.registry import Registry

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Download",
    "dataset_info",
    "dataset_root",
    "download_dataset",
    "load_dataset",
]

SPLITS = ("train", "test")
ENV_VAR = "SPARTA_DATA"
DOWNLOAD_TIMEOUT_S = 60.0

Tensors = tuple[torch.Tensor, torch.Tensor]
Reader = Callable[["DatasetSpec", str, list[Path]], Tensors]


@dataclass(frozen=True)
class Download:
    """One public file and its published md5; a ``.tar.gz`` is unpacked into the root."""

    url: str
    md5: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def is_archive(self) -> bool:
        return self.filename.endswith(".tar.gz")


@dataclass(frozen=True)
class DatasetSpec:
    """Everything other code needs to know about a dataset without loading it."""

    name: str
    reader: Reader  # (spec, split, located files) -> (images N x C x H x W in [0, 1], labels)
    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    files: Mapping[str, tuple[str, ...]]  # split -> paths relative to the dataset root
    default_root: str  # "~" is expanded when used, so tests can move HOME
    downloads: tuple[Download, ...] = ()
    augment: str = "none"  # training augmentation by default (sparta.training.loader.AUGMENTATIONS)


# ---------------------------------------------------------------------------------------
# Shared checks and conversion


def _reason(err: BaseException) -> str:
    """A one-line description of an exception, for messages that must fit on one line."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _int_labels(values: object, path: Path) -> np.ndarray:
    """Labels as a flat int64 array; anything that is not a list of integers is an error."""
    try:
        labels = np.asarray(values)
        if labels.dtype.kind not in "iuf":
            raise TypeError(f"labels have dtype {labels.dtype}")
        return labels.reshape(-1).astype(np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        raise DataError(f"bad labels in {path}: {_reason(err)}") from err


def _check(
    spec: DatasetSpec,
    images: np.ndarray,
    labels: np.ndarray,
    images_path: Path,
    labels_path: Path,
    first_label: int = 0,
) -> None:
    """Reject shapes that disagree with the registry and labels that disagree with images."""
    expected = (spec.channels, spec.image_size, spec.image_size)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise DataError(
            f"{images_path}: images have shape {tuple(images.shape)}, "
            f"expected N x {' x '.join(map(str, expected))} for {spec.name}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path}: {labels.size} labels for {len(images)} images in {images_path}")
    if not len(images):
        raise DataError(f"{images_path} holds no images (its header says 0)")
    last_label = first_label + spec.num_classes - 1
    if labels.size and (labels.min() < first_label or labels.max() > last_label):
        raise DataError(
            f"{labels_path}: labels must lie in {first_label}..{last_label}, found {labels.min()}..{labels.max()}"
        )


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> Tensors:
    """uint8 images -> float32 in [0, 1], converted once; copies only if not contiguous/writable."""
    pixels = np.require(images, dtype=np.uint8, requirements=["C", "W"])
    return torch.from_numpy(pixels).float().div_(255), torch.from_numpy(labels.astype(np.int64))


# ---------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

_IDX_UBYTE_1D = 0x00000801  # labels
_IDX_UBYTE_3D = 0x00000803  # images


def _read_bytes(path: Path) -> bytes:
    """Whole file contents, gunzipped when the name ends in ``.gz``."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"corrupt or unreadable file {path}: {_reason(err)}") from err


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file whose magic number must be ``magic``."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"truncated IDX file {path}: only {len(raw)} bytes")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"bad IDX magic number 0x{found:08x} in {path}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"truncated IDX file {path}: {len(raw)} bytes, header needs {header}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(dims)
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "oversized"
        raise DataError(f"{kind} IDX file {path}: {len(raw)} bytes, header {dims} needs {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_idx_pair(spec: DatasetSpec, split: str, paths: list[Path]) -> Tensors:
    images_path, labels_path = paths
    images = _read_idx(images_path, _IDX_UBYTE_3D)[:, None]
    labels = _read_idx(labels_path, _IDX_UBYTE_1D).astype(np.int64)
    _check(spec, images, labels, images_path, labels_path)
    return _to_tensors(images, labels)


# ---------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 python pickles

_RECONSTRUCT = np.ndarray(0).__reduce__()[0]  # numpy's own name for it moves between versions
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # what protocol-5 array pickles call
_SAFE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes at protocol <= 2
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only, so a hostile file cannot run code.

    Dicts, lists, ints and bytes need no globals; every other global is refused.
    """

    def find_class(self, module: str, name: str) -> object:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def _unpickle(path: Path) -> object:
    try:
        with path.open("rb") as f:
            return _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as err:  # a corrupt or hostile pickle can fail in almost any way
        raise DataError(f"unsafe or corrupt pickle {path}: {_reason(err)}") from err


def _read_cifar_batch(spec: DatasetSpec, path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DataError(f"{path} is not a CIFAR batch: need a dict with b'data' and {label_key!r}")
    data = batch[b"data"]
    row = spec.channels * spec.image_size**2
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape[1:] == (row,)):
        raise DataError(f"{path}: b'data' must be an N x {row} uint8 array")
    # Each row is the R plane, then G, then B, each row-major: exactly C x H x W.
    images = data.reshape(-1, spec.channels, spec.image_size, spec.image_size)
    labels = _int_labels(batch[label_key], path)
    _check(spec, images, labels, path, path)
    return images, labels


def _read_cifar(label_key: bytes, spec: DatasetSpec, split: str, paths: list[Path]) -> Tensors:
    batches = [_read_cifar_batch(spec, path, label_key) for path in paths]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return _to_tensors(images, labels)


# ---------------------------------------------------------------------------------------
# SVHN MATLAB files, and scikit-learn's bundled digits


def _read_svhn(spec: DatasetSpec, split: str, paths: list[Path]) -> Tensors:
    from scipy.io import loadmat  # imported here: only SVHN needs scipy's import time

    (path,) = paths
    try:
        mat = loadmat(path)
    except Exception as err:  # scipy raises many unrelated types on a corrupt file
        raise DataError(f"corrupt or unreadable MATLAB file {path}: {_reason(err)}") from err
    pixels = mat.get("X")
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 4:
        raise DataError(f"{path}: 'X' must be an H x W x C x N uint8 array")
    images = pixels.transpose(3, 2, 0, 1)  # H x W x C x N -> N x C x H x W
    labels = _int_labels(mat.get("y"), path)
    _check(spec, images, labels, path, path, first_label=1)
    return _to_tensors(images, labels % 10)  # SVHN writes digit 0 as label 10


DIGITS_TEST_SIZE = 450  # of 1,797: 1,347 train / 450 test, stratified, random_state=0


def _read_digits(spec: DatasetSpec, split: str, paths: list[Path]) -> Tensors:
    """scikit-learn's 8x8 digits (values 0..16), upsampled to 28x28 so MNIST models fit."""
    from sklearn.datasets import load_digits  # imported here: only digits needs sklearn
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    train, test = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, random_state=0, stratify=labels)
    index = np.sort(train if split == "train" else test)
    small = torch.from_numpy(digits.images[index].astype(np.float32) / 16.0).unsqueeze(1)
    size = (spec.image_size, spec.image_size)
    images = F.interpolate(small, size=size, mode="bilinear", align_corners=False)
    return images.clamp_(0.0, 1.0).contiguous(), torch.from_numpy(labels[index])


# ---------------------------------------------------------------------------------------
# Registry

_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_IDX_FILES = {
    split: (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
    for split, prefix in (("train", "train"), ("test", "t10k"))
}


def _idx_downloads(base_url: str, *md5s: str) -> tuple[Download, ...]:
    """Downloads for the four IDX files, md5s in train images, train labels, test ... order."""
    names = [name for split in SPLITS for name in _IDX_FILES[split]]
    return tuple(Download(base_url + name, md5) for name, md5 in zip(names, md5s, strict=True))


def _cache(name: str) -> str:
    return f"~/.cache/sparta/{name}"


_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR100_DIR = "cifar-100-python"
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"

DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _spec in (
    DatasetSpec(
        name="fashion-mnist",
        reader=_read_idx_pair,
        channels=1,
        image_size=28,
        num_classes=10,
        mean=(0.2860,),
        std=(0.3530,),
        files=_IDX_FILES,
        default_root="/usr/share/datasets/fashion-mnist",  # Debian's dataset-fashion-mnist
        downloads=_idx_downloads(
            _FASHION_URL,
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    ),
    DatasetSpec(
        name="mnist",
        reader=_read_idx_pair,
        channels=1,
        image_size=28,
        num_classes=10,
        mean=(0.1307,),
        std=(0.3081,),
        files=_IDX_FILES,
        default_root=_cache("mnist"),
        downloads=_idx_downloads(
            _MNIST_URL,
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ),
    DatasetSpec(
        name="digits",
        reader=_read_digits,
        channels=1,
        image_size=28,
        num_classes=10,
        # Measured on the 28x28 train split (0.3052, 0.3246); bundled with sklearn, no files.
        mean=(0.3052,),
        std=(0.3246,),
        files={"train": (), "test": ()},
        default_root=_cache("digits"),
    ),
    DatasetSpec(
        name="cifar10",
        augment="crop-flip",  # flips suit natural images and clothes, not digits
        reader=partial(_read_cifar, b"labels"),
        channels=3,
        image_size=32,
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        files={
            "train": tuple(f"{_CIFAR10_DIR}/data_batch_{i}" for i in range(1, 6)),
            "test": (f"{_CIFAR10_DIR}/test_batch",),
        },
        default_root=_cache("cifar10"),
        downloads=(
            Download(
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
            ),
        ),
    ),
    DatasetSpec(
        name="cifar100",
        augment="crop-flip",  # flips suit natural images and clothes, not digits
        reader=partial(_read_cifar, b"fine_labels"),
        channels=3,
        image_size=32,
        num_classes=100,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        files={"train": (f"{_CIFAR100_DIR}/train",), "test": (f"{_CIFAR100_DIR}/test",)},
        default_root=_cache("cifar100"),
        downloads=(
            Download(
                "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
            ),
        ),
    ),
    DatasetSpec(
        name="svhn",
        augment="crop",  # digits: no flips
        reader=_read_svhn,
        channels=3,
        image_size=32,
        num_classes=10,
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        files={"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)},
        default_root=_cache("svhn"),
        downloads=(
            Download(_SVHN_URL + "train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
            Download(_SVHN_URL + "test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
        ),
    ),
):
    DATASETS.register(_spec.name)(_spec)


# ---------------------------------------------------------------------------------------
# Public API


def dataset_info(name: str) -> DatasetSpec:
    """The registry entry for ``name`` (channels, image_size, num_classes, mean, std, ...)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from: {', '.join(DATASETS)}")
    return DATASETS.get(name)


def dataset_root(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where ``name`` lives: ``root`` if given, else ``$SPARTA_DATA/<name>``, else its default."""
    spec = dataset_info(name)
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser() / spec.name
    return Path(spec.default_root).expanduser()


def _find(folder: Path, relative: str) -> Path | None:
    """The file itself, or its uncompressed twin when the registry names a ``.gz``."""
    names = (relative, relative.removesuffix(".gz"))
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _locate(spec: DatasetSpec, folder: Path, split: str) -> list[Path]:
    paths = []
    for relative in spec.files[split]:
        found = _find(folder, relative)
        if found is None:
            raise DataError(f'missing {folder / relative}; run "sparta download {spec.name}" or place the file there')
        paths.append(found)
    return paths


def load_dataset(name: str, split: str = "train", root: str | os.PathLike[str] | None = None) -> Tensors:
    """Images float32 N x C x H x W in [0, 1] and labels int64 N; never downloads."""
    spec = dataset_info(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for {name}; choose from: {', '.join(SPLITS)}")
    folder = dataset_root(name, root)
    return spec.reader(spec, split, _locate(spec, folder, split))


def split_size(name: str, split: str = "test", root: str | os.PathLike[str] | None = None) -> int:
    """How many images a split holds (read once per folder and process), to cap a count
    of images a user asks for at what exists."""
    return _split_size(name, split, dataset_root(name, root).resolve())


@cache
def _split_size(name: str, split: str, folder: Path) -> int:
    return len(load_dataset(name, split, folder)[1])


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(item: Download, target: Path, timeout: float) -> None:
    """Download to a temporary file beside ``target``; rename only once the md5 matches."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(item.url, timeout=timeout) as response,
        ):
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != item.md5:
            raise DataError(
                f"checksum mismatch for {item.url}: md5 {digest.hexdigest()}, expected {item.md5}; "
                f"nothing written to {target}"
            )
        os.replace(tmp, target)
    # URLError, HTTPError and socket timeouts are all OSErrors.
    except (OSError, ValueError, http.client.HTTPException) as err:
        raise DataError(
            f"could not download {item.url} ({_reason(err)}); fetch it by hand and place it at {target}"
        ) from err
    finally:
        tmp.unlink(missing_ok=True)


_TAR_HAS_FILTER = hasattr(tarfile, "data_filter")  # Python 3.11.4 and later


def _extract(archive: Path, folder: Path) -> None:
    """Unpack a .tar.gz, refusing absolute paths, '..', links and device files."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                name = PurePosixPath(member.name)
                plain = member.isfile() or member.isdir()
                if name.is_absolute() or ".." in name.parts or not plain:
                    raise DataError(f"unsafe member {member.name!r} in {archive}; nothing extracted")
            if _TAR_HAS_FILTER:
                tar.extractall(folder, members=members, filter="data")
            else:
                tar.extractall(folder, members=members)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot extract {archive}: {_reason(err)}") from err


def download_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> list[Path]:
    """Fetch (and verify, and unpack) what ``name`` needs; returns the data files now present.

    Files already in place are kept as they are, so a hand-placed or packaged copy (such as
    Debian's recompressed Fashion-MNIST) is never replaced. Digits needs nothing.
    """
    spec = dataset_info(name)
    folder = dataset_root(name, root)
    if spec.downloads:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"cannot create {folder} ({_reason(err)}); pass a root or set {ENV_VAR}") from err
    for item in spec.downloads:
        target = folder / item.filename
        if item.is_archive:
            if all(_find(folder, rel) for split in SPLITS for rel in spec.files[split]):
                continue
            if not (target.is_file() and _md5(target) == item.md5):
                _fetch(item, target, timeout)
            _extract(target, folder)
        elif _find(folder, item.filename) is None:
            _fetch(item, target, timeout)
    return [path for split in SPLITS for path in _locate(spec, folder, split)]
