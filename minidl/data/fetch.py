"""Download a data set from its official URLs, verifying md5 checksums, with atomic writes.

Each file is streamed into a temporary file in the destination folder and renamed over its
final name only once complete and verified, so an interrupted or corrupt download never leaves
a file that ``load_dataset`` would pick up.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import urllib.request

from .sources import DATASET_NAMES, DEFAULT_DATA_DIR, get_source

_CHUNK = 1 << 20  # bytes read per step while streaming a download


class ChecksumError(ValueError):
    """A downloaded file's md5 differs from the official one."""


def md5sum(path) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest, md5: str | None = None, timeout: float = 60.0) -> str:
    """Fetch ``url`` into the file ``dest`` atomically; check ``md5`` when given.

    Raises ChecksumError (and leaves nothing at ``dest``) on a mismatch, and the urllib error
    when the request fails.
    """
    dest = os.fspath(dest)
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(dest)}.", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise ChecksumError(f"checksum mismatch for {url}: md5 {digest.hexdigest()}, "
                                f"expected {md5}; the file was discarded")
        os.replace(tmp, dest)  # atomic on POSIX and Windows within one folder
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return dest


def download(name: str, dest_dir=None, mirrors=None, timeout: float = 60.0) -> str:
    """Download data set ``name`` into ``dest_dir/<name>/`` and return that folder.

    ``dest_dir`` defaults to ``~/.minidl/data`` (on the search path of ``load_dataset``).
    Files already present with the right checksum are kept. ``mirrors`` (base URLs ending in
    ``/``) replaces the official ones, which are tried in order.
    """
    source = get_source(name)
    folder = os.path.join(os.path.expanduser(os.fspath(dest_dir or DEFAULT_DATA_DIR)),
                          source.subdirs[0])
    for filename, md5 in source.files.items():
        dest = os.path.join(folder, filename)
        if os.path.isfile(dest) and (md5 is None or md5sum(dest) == md5):
            continue
        errors, bad_checksum = [], False
        for base in mirrors or source.mirrors:
            try:
                download_file(base + filename, dest, md5=md5, timeout=timeout)
                break
            except (OSError, ChecksumError) as err:  # urllib's URLError is an OSError
                errors.append(f"  {base + filename}: {err}")
                bad_checksum |= isinstance(err, ChecksumError)
        else:
            # A corrupt file is the more alarming news, so it decides the exception type.
            error_type = ChecksumError if bad_checksum else OSError
            raise error_type(f"could not download {source.title} file {filename}:\n"
                             + "\n".join(errors))
    return folder


def main(argv=None) -> None:
    """Command line: ``python -m minidl.data NAME [DEST_DIR]`` downloads a data set."""
    parser = argparse.ArgumentParser(prog="python -m minidl.data", description=download.__doc__)
    parser.add_argument("name", choices=DATASET_NAMES)
    parser.add_argument("dest_dir", nargs="?", default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    print(download(args.name, args.dest_dir))
