"""Shared fixtures: the array module ``xp``: numpy; the CPU stand-in for CuPy (gpu_standin.py),
which runs the GPU code path under CuPy's rules on every machine; and cupy itself when a GPU
is present."""
import numpy as np
import pytest

from minidl import backend

_BACKENDS = ["numpy", "standin", pytest.param("cupy", marks=pytest.mark.gpu)]


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs cupy and a CUDA device")


@pytest.fixture(params=_BACKENDS)
def xp(request):
    """The array module a test runs on; GPU cases skip themselves without a device."""
    if request.param == "numpy":
        return np
    if request.param == "standin":
        from tests.gpu_standin import CUPY, install  # noqa: PLC0415
        install(request.getfixturevalue("monkeypatch"))
        return CUPY
    if not backend.gpu_available():
        pytest.skip("cupy/CUDA device not available")
    import cupy  # noqa: PLC0415  (only reached with a GPU)
    return cupy


@pytest.fixture
def rng():
    return np.random.default_rng(0)
