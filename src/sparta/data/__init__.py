"""Image classification datasets as tensors: one registry, strict readers, no surprise downloads.

The registry says what each dataset is (shape, classes, statistics, files, downloads);
`formats` reads the files, `download` fetches them. ``load_dataset`` never touches the
network; ``download_dataset`` does, and only writes a file once its md5 matches the
published one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

from sparta.data.download import extract, fetch, md5_of
from sparta.data.formats import Tensors, read_cifar, read_digits, read_idx_pair, read_svhn, reason
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
    "split_size",
]

SPLITS = ("train", "test")
ENV_VAR = "SPARTA_DATA"
DOWNLOAD_TIMEOUT_S = 60.0

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
        reader=read_idx_pair,
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
        reader=read_idx_pair,
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
        reader=read_digits,
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
        reader=partial(read_cifar, b"labels"),
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
        reader=partial(read_cifar, b"fine_labels"),
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
        reader=read_svhn,
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
            raise DataError(f"cannot create {folder} ({reason(err)}); pass a root or set {ENV_VAR}") from err
    for item in spec.downloads:
        target = folder / item.filename
        if item.is_archive:
            if all(_find(folder, rel) for split in SPLITS for rel in spec.files[split]):
                continue
            if not (target.is_file() and md5_of(target) == item.md5):
                fetch(item, target, timeout)
            extract(target, folder)
        elif _find(folder, item.filename) is None:
            fetch(item, target, timeout)
    return [path for split in SPLITS for path in _locate(spec, folder, split)]
