"""A CPU stand-in for CuPy that keeps CuPy's rules and counts device->host reads.

Not caught: ``np.asarray(device_array)`` / ``np.array(device_array)`` silently give a host
array here (a NumPy subclass cannot refuse them), where CuPy raises a TypeError.

CI has no GPU, yet the GPU path must not rot: this module plays ``cupy`` for
``minidl.backend`` so the same code runs "on the device" on the CPU. Its arrays
(``DeviceArray``, a NumPy subclass) follow the CuPy rules that GPU bugs break:

- an operation mixing a device array with a host ``numpy.ndarray`` is a TypeError (CuPy:
  "Unsupported type <class 'numpy.ndarray'>"); NumPy scalars and Python numbers are fine;
- results of operations on device arrays stay device arrays, through ufuncs, NumPy functions
  (CuPy implements NumPy's ``__array_function__`` protocol) and the ``xp.*`` module functions;
- host->device copies of arrays (``cupy.asarray`` of a NumPy array) are counted apart;
- every read to the host is counted: ``float()``, ``int()``, ``bool()``, ``.item()``,
  ``.tolist()``, ``.get()`` and ``cupy.asnumpy``. On a GPU each of those waits for the device,
  so the count is the number of synchronisations a piece of code costs.

``install(monkeypatch)`` swaps it in for the test's duration and returns the read counter.
Compiled CPU kernels are switched off meanwhile (``MINIDL_KERNELS=numpy``): a device array is
a NumPy subclass here, and a real CuPy array never takes them.
"""
from __future__ import annotations

import types

import numpy as np


class Reads:
    """How many device->host reads (``count``) and host->device copies of arrays (``copies_in``)
    happened since ``reset``."""

    count = 0
    copies_in = 0

    @classmethod
    def add(cls):
        cls.count += 1

    @classmethod
    def reset(cls):
        cls.count = cls.copies_in = 0


def _plain(a):
    """The host view of a device array (anything else unchanged), for calling NumPy itself."""
    return a.view(np.ndarray) if isinstance(a, DeviceArray) else a


def _plain_tree(obj):
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain_tree(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _plain_tree(v) for k, v in obj.items()}
    return _plain(obj)


def _device_tree(obj):
    """NumPy arrays in a result become device arrays (a 0-d result too, as in CuPy)."""
    if isinstance(obj, np.ndarray) and not isinstance(obj, DeviceArray):
        return obj.view(DeviceArray)
    if isinstance(obj, np.generic):
        return np.asarray(obj).view(DeviceArray)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_device_tree(o) for o in obj)
    return obj


def _refuse_host(objs):
    for a in objs:
        if isinstance(a, (list, tuple)):
            _refuse_host(a)
        elif type(a) is np.ndarray:
            raise TypeError(f"Unsupported type {type(a)}: a host numpy array mixed with "
                            f"device arrays (shape {a.shape}); copy it with xp.asarray first")


class DeviceArray(np.ndarray):
    """A NumPy array playing a CuPy array (see the module docstring)."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _refuse_host(inputs)
        if out is not None:
            _refuse_host(out)
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*(_plain(a) for a in inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _device_tree(result)

    def __array_function__(self, func, types_, args, kwargs):
        _refuse_host(args)
        _refuse_host(kwargs.values())
        return _device_tree(func(*_plain_tree(args), **_plain_tree(kwargs)))

    def __getitem__(self, index):
        return _device_tree(np.ndarray.__getitem__(self, _plain_tree(index)))

    # ---- reads to the host: each one a synchronisation on a GPU
    def _read(self):
        Reads.add()
        return self.view(np.ndarray)

    def __float__(self):
        return float(self._read())

    def __int__(self):
        return int(self._read())

    def __index__(self):
        return self._read().__index__()

    def __bool__(self):
        return bool(self._read())

    def item(self, *args):
        return self._read().item(*args)

    def tolist(self):
        return self._read().tolist()

    def get(self):
        return np.array(self._read())

    def __array__(self, dtype=None, copy=None):  # CuPy: implicit conversion is an error
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")


def _wrap(fn):
    """A module function that takes device arrays and returns device arrays."""
    def call(*args, **kwargs):
        return _device_tree(fn(*_plain_tree(args), **_plain_tree(kwargs)))
    call.__name__ = getattr(fn, "__name__", "call")
    return call


class _Namespace(types.ModuleType):
    """``cupy`` or one of its submodules (fft, random, linalg) over the NumPy one."""

    def __init__(self, name, numpy_module):
        super().__init__(name)
        self._numpy = numpy_module

    def __getattr__(self, name):
        value = getattr(self._numpy, name)
        if isinstance(value, types.ModuleType):
            return _Namespace(f"{self.__name__}.{name}", value)
        if callable(value) and not isinstance(value, type):
            return _wrap(value)
        return value  # dtypes, constants, finfo's class


def asarray(a, dtype=None):
    """A host->device copy (or the device array itself)."""
    if isinstance(a, DeviceArray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    if isinstance(a, np.ndarray):
        Reads.copies_in += 1
    return np.array(a, dtype=dtype, copy=True).view(DeviceArray)


def array(a, dtype=None, copy=True, **kwargs):
    """``cupy.array``: a new device array (a host->device copy when ``a`` is on the host)."""
    if isinstance(a, DeviceArray):
        return np.array(a.view(np.ndarray), dtype=dtype, copy=copy, **kwargs).view(DeviceArray)
    if isinstance(a, np.ndarray):
        Reads.copies_in += 1
    return np.array(a, dtype=dtype, copy=True, **kwargs).view(DeviceArray)


def asnumpy(a):
    """A device->host copy: one read."""
    if isinstance(a, DeviceArray):
        return np.array(a._read())
    return np.asarray(a)


def _cupy_module():
    fake = _Namespace("cupy", np)
    fake.ndarray = DeviceArray
    fake.asarray = asarray
    fake.array = array
    fake.asnumpy = asnumpy
    fake.__version__ = "stand-in"
    fake.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(
            getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 0,
            getDeviceProperties=lambda device: {"name": b"CPU stand-in for CuPy"}),
        Device=lambda *a: types.SimpleNamespace(synchronize=lambda: None, id=0))
    fake.get_default_memory_pool = lambda: types.SimpleNamespace(
        free_all_blocks=lambda: None, total_bytes=lambda: 0)
    return fake


CUPY = _cupy_module()


def install(monkeypatch) -> type:
    """Make ``minidl.backend`` use the stand-in as ``cupy``; return the ``Reads`` counter."""
    from minidl import backend

    monkeypatch.setattr(backend, "_cupy", CUPY)
    monkeypatch.setenv("MINIDL_KERNELS", "numpy")
    Reads.reset()
    return Reads
