"""The standard file formats read strictly: IDX (MNIST, Fashion-MNIST), the CIFAR python
pickles (through an unpickler that builds arrays and nothing else), SVHN's MATLAB files,
and scikit-learn's bundled digits.

Each reader takes (spec, split, located files) and returns images float32
N x C x H x W in [0, 1] and int64 labels; it parses with numpy (no per-byte Python loops),
checks the file against its own header and the registry entry, and turns anything wrong
into a one-line ``DataError`` naming the file.
"""

from __future__ import annotations

import codecs
import gzip
import math
import pickle
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from sparta.errors import DataError

if TYPE_CHECKING:
    from sparta.data import DatasetSpec

Tensors = tuple[torch.Tensor, torch.Tensor]


def reason(err: BaseException) -> str:
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
        raise DataError(f"bad labels in {path}: {reason(err)}") from err


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
        raise DataError(f"corrupt or unreadable file {path}: {reason(err)}") from err


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


def read_idx_pair(spec: DatasetSpec, split: str, paths: list[Path]) -> Tensors:
    """An IDX images file and its labels file (MNIST, Fashion-MNIST)."""
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
        raise DataError(f"unsafe or corrupt pickle {path}: {reason(err)}") from err


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


def read_cifar(label_key: bytes, spec: DatasetSpec, split: str, paths: list[Path]) -> Tensors:
    """The CIFAR python batches of a split, their labels under `label_key` (CIFAR-100: fine labels)."""
    batches = [_read_cifar_batch(spec, path, label_key) for path in paths]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return _to_tensors(images, labels)


# ---------------------------------------------------------------------------------------
# SVHN MATLAB files, and scikit-learn's bundled digits


def read_svhn(spec: DatasetSpec, split: str, paths: list[Path]) -> Tensors:
    """SVHN's cropped-digits MATLAB file (H x W x C x N; digit 0 stored as label 10)."""
    from scipy.io import loadmat  # imported here: only SVHN needs scipy's import time

    (path,) = paths
    try:
        mat = loadmat(path)
    except Exception as err:  # scipy raises many unrelated types on a corrupt file
        raise DataError(f"corrupt or unreadable MATLAB file {path}: {reason(err)}") from err
    pixels = mat.get("X")
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 4:
        raise DataError(f"{path}: 'X' must be an H x W x C x N uint8 array")
    images = pixels.transpose(3, 2, 0, 1)  # H x W x C x N -> N x C x H x W
    labels = _int_labels(mat.get("y"), path)
    _check(spec, images, labels, path, path, first_label=1)
    return _to_tensors(images, labels % 10)  # SVHN writes digit 0 as label 10


DIGITS_TEST_SIZE = 450  # of 1,797: 1,347 train / 450 test, stratified, random_state=0


def read_digits(spec: DatasetSpec, split: str, paths: list[Path]) -> Tensors:
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
