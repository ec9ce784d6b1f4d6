"""Shared fixtures: the array module ``xp`` (numpy, and cupy when a GPU is present)."""
import numpy as np
import pytest

from minidl import backend

_BACKENDS = ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)]


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs cupy and a CUDA device")


@pytest.fixture(params=_BACKENDS)
def xp(request):
    """The array module a test runs on; GPU cases skip themselves without a device."""
    if request.param == "numpy":
        return np
    if not backend.gpu_available():
        pytest.skip("cupy/CUDA device not available")
    import cupy  # noqa: PLC0415  (only reached with a GPU)
    return cupy


@pytest.fixture
def rng():
    return np.random.default_rng(0)
