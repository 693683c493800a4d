"""One public file onto disk, safely: downloaded beside its target and renamed only once
its md5 matches the published one; a .tar.gz unpacked only when no member could escape
the folder (absolute paths, '..', links, device files)."""

from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from sparta.data.formats import reason
from sparta.errors import DataError

if TYPE_CHECKING:
    from sparta.data import Download


def md5_of(path: Path) -> str:
    """The file's md5, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(item: Download, target: Path, timeout: float) -> None:
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
            f"could not download {item.url} ({reason(err)}); fetch it by hand and place it at {target}"
        ) from err
    finally:
        tmp.unlink(missing_ok=True)


_TAR_HAS_FILTER = hasattr(tarfile, "data_filter")  # Python 3.11.4 and later


def extract(archive: Path, folder: Path) -> None:
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
        raise DataError(f"cannot extract {archive}: {reason(err)}") from err
