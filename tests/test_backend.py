"""The array backend: module selection, device moves, messages, and the cupy import rule."""
import pathlib
import re

import numpy as np
import pytest

import minidl
from minidl import backend


def test_numpy_is_the_default_module():
    assert backend.get_array_module() is np
    assert backend.get_array_module(np.ones(2), 3.0, [1]) is np
    assert backend.device_of(np.ones(2)) == "cpu"
    assert isinstance(backend.gpu_available(), bool)


def test_cpu_moves_and_asnumpy():
    x = np.arange(3.0)
    assert backend.to_device(x, "cpu") is x  # no copy when already there
    out = backend.asnumpy([1, 2])
    assert isinstance(out, np.ndarray) and out.tolist() == [1, 2]
    assert backend.asnumpy(2.5) == 2.5


def test_unknown_device():
    with pytest.raises(ValueError, match=r"unknown device 'cuda'; "
                                         r"expected one of \('cpu', 'gpu'\)"):
        backend.check_device("cuda")
    assert backend.check_device("cpu") == "cpu"


@pytest.mark.skipif(backend.gpu_available(), reason="checks the message shown without a GPU")
def test_gpu_request_without_gpu_says_why():
    with pytest.raises(RuntimeError, match="device 'gpu' requested but cupy"):
        backend.to_device(np.ones(2), "gpu")


def test_round_trip(xp):
    device = "gpu" if xp is not np else "cpu"
    x = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    moved = backend.to_device(x, device)
    assert backend.get_array_module(moved) is xp and backend.device_of(moved) == device
    assert backend.get_array_module(x, moved) is xp  # any device array decides
    back = backend.asnumpy(moved)
    assert type(back) is np.ndarray and back.dtype == np.float32
    np.testing.assert_array_equal(back, x)


def test_only_backend_imports_cupy():
    package = pathlib.Path(minidl.__file__).parent
    pattern = re.compile(r"^\s*(import cupy|from cupy)", re.MULTILINE)
    offenders = [str(path.relative_to(package)) for path in sorted(package.rglob("*.py"))
                 if path.name != "backend.py" and pattern.search(path.read_text())]
    assert offenders == []
