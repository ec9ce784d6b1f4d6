"""Download code against a local HTTP server on 127.0.0.1: success, mirrors, checksum failure."""
import dataclasses
import functools
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from minidl.data import ChecksumError, download, download_file, load_dataset, write_idx
from minidl.data.sources import SOURCES


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        _QuietHandler.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve tmp_path/www on a free loopback port; yields (base URL, served folder)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # loopback requests must not go through a proxy
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    _QuietHandler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_download_file_writes_verified_file(server, tmp_path):
    base, root = server
    payload = os.urandom(3 << 20)  # larger than one streaming chunk
    (root / "blob.bin").write_bytes(payload)
    dest = tmp_path / "out" / "blob.bin"
    assert download_file(base + "blob.bin", dest, md5=md5(payload)) == str(dest)
    assert dest.read_bytes() == payload
    assert os.listdir(dest.parent) == ["blob.bin"]  # no temporary file left behind


def test_checksum_mismatch_raises_and_leaves_nothing(server, tmp_path):
    base, root = server
    (root / "blob.bin").write_bytes(b"tampered content")
    out = tmp_path / "out"
    with pytest.raises(ChecksumError, match="expected 0{32}"):
        download_file(base + "blob.bin", out / "blob.bin", md5="0" * 32)
    assert os.listdir(out) == []


def test_http_error_leaves_nothing(server, tmp_path):
    base, _ = server
    out = tmp_path / "out"
    with pytest.raises(OSError, match="404"):
        download_file(base + "missing.bin", out / "missing.bin")
    assert os.listdir(out) == []


@pytest.fixture
def served_mnist(server, monkeypatch):
    """Serve four tiny MNIST IDX files and register their md5s as the official ones."""
    base, root = server
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 40).astype(np.uint8),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 10).astype(np.uint8)}
    (root / "mirror").mkdir()
    for name, array in arrays.items():
        write_idx(root / "mirror" / name, array)
    files = {name: md5((root / "mirror" / name).read_bytes()) for name in arrays}
    monkeypatch.setitem(SOURCES, "mnist", dataclasses.replace(SOURCES["mnist"], files=files))
    return base, root, arrays


def test_download_then_load(served_mnist, tmp_path):
    base, _, arrays = served_mnist
    # the first mirror 404s, the second serves the files
    folder = download("mnist", tmp_path / "data", mirrors=[base + "nowhere/", base + "mirror/"])
    assert folder == str(tmp_path / "data" / "mnist")
    assert sorted(os.listdir(folder)) == sorted(arrays)
    splits = load_dataset("mnist", data_dir=tmp_path / "data", val_fraction=0, normalize=False)
    np.testing.assert_array_equal(splits.test[1], arrays["t10k-labels-idx1-ubyte.gz"])
    # a second call finds verified files and fetches nothing
    count = len(_QuietHandler.requests)
    download("mnist", tmp_path / "data", mirrors=[base + "mirror/"])
    assert len(_QuietHandler.requests) == count


def test_download_with_corrupt_mirror_raises_checksum_error(served_mnist, tmp_path):
    base, root, _ = served_mnist
    (root / "corrupt").mkdir()
    for name in os.listdir(root / "mirror"):
        (root / "corrupt" / name).write_bytes(b"not the real file")
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz"):
        download("mnist", tmp_path / "data", mirrors=[base + "corrupt/"])
    assert os.listdir(tmp_path / "data" / "mnist") == []


def test_official_checksums_are_recorded():
    assert SOURCES["cifar10"].files == {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}
    assert SOURCES["cifar100"].files == {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"}
    assert SOURCES["fashion_mnist"].files["train-images-idx3-ubyte.gz"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert all(url.startswith(("http://", "https://")) for s in SOURCES.values() for url in s.mirrors)
