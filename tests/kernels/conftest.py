"""The ``kernel_mode`` fixture: each test runs on the NumPy path and, where numba is
installed, on the compiled path (``MINIDL_KERNELS`` is read on every call)."""
import pytest

from minidl import kernels


@pytest.fixture(params=["numpy", "numba"])
def kernel_mode(request, monkeypatch):
    if request.param == "numba" and not kernels.numba_available():
        pytest.skip('numba not installed (pip install -e ".[fast]")')
    monkeypatch.setenv(kernels.ENV_VAR, request.param)
    return request.param


@pytest.fixture
def numba_kernels():
    """Skip unless numba is installed; for tests that compare a kernel with its reference."""
    if not kernels.numba_available():
        pytest.skip('numba not installed (pip install -e ".[fast]")')
