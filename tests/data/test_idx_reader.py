"""IDX reader: round trips in every element type, gzip and plain, and clear errors on bad files."""
import gzip

import numpy as np
import pytest

from minidl.data import read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip(tmp_path, dtype, name):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_header_is_big_endian(tmp_path):
    write_idx(tmp_path / "labels", np.array([1, 2, 3], dtype=np.int32))
    raw = (tmp_path / "labels").read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 1])  # int32, one dimension
    assert raw[4:8] == (3).to_bytes(4, "big")
    assert raw[8:12] == (1).to_bytes(4, "big")


def test_gzip_detected_from_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "plain", array)
    (tmp_path / "compressed-without-suffix").write_bytes(gzip.compress((tmp_path / "plain").read_bytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed-without-suffix"), array)


def test_bad_magic_number(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_unknown_type_code(tmp_path):
    (tmp_path / "bad").write_bytes(bytes([0, 0, 0x42, 1]) + (1).to_bytes(4, "big") + b"\x00")
    with pytest.raises(ValueError, match="type code 0x42"):
        read_idx(tmp_path / "bad")


def test_truncated_payload_names_shape_and_sizes(tmp_path):
    write_idx(tmp_path / "images", np.zeros((4, 28, 28), dtype=np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "images").read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"\(4, 28, 28\).*3136 bytes.*3126 bytes"):
        read_idx(tmp_path / "short")


def test_corrupt_gzip_is_a_value_error(tmp_path):
    (tmp_path / "broken.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(ValueError, match="broken.gz"):
        read_idx(tmp_path / "broken.gz")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="no IDX type code"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.complex64))
