"""Atomic ``.npz`` checkpoints of nested state (model, optimiser, schedule, RNGs, counters).

Nested dicts are flattened to ``"prefix/key"`` names (``"model/features.0.weight"``,
``"optim/3.exp_avg"``) so one ``.npz`` holds everything, and the file is loadable without pickle.
The write goes to a temporary file in the same folder, is flushed to disk, then renamed over
the old checkpoint with ``os.replace`` (atomic on POSIX and Windows): a crash or Ctrl-C in the
middle of a save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import backend

SEPARATOR = "/"


def flatten(nested: dict, prefix: str = "") -> dict:
    """``{"a": {"b": x}}`` -> ``{"a/b": x}``; keys must be strings without the separator."""
    flat = {}
    for key, value in nested.items():
        if not isinstance(key, str) or SEPARATOR in key:
            raise ValueError(f"checkpoint keys must be strings without {SEPARATOR!r}, got {key!r}")
        name = f"{prefix}{SEPARATOR}{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def unflatten(flat: dict) -> dict:
    """Inverse of :func:`flatten`."""
    nested: dict = {}
    for name, value in flat.items():
        node = nested
        *parents, leaf = name.split(SEPARATOR)
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _to_array(name: str, value) -> np.ndarray:
    """A numpy array for ``value`` (device arrays copied to the host); objects are refused."""
    array = np.asarray(backend.asnumpy(value))
    if array.dtype == object:
        raise TypeError(f"checkpoint entry {name!r} is not an array, number or string "
                        f"({type(value).__name__}); JSON-encode it first")
    return array


def _from_array(array: np.ndarray):
    """0-d arrays come back as Python scalars/strings, larger ones as arrays."""
    return array.item() if array.ndim == 0 else array


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def save_checkpoint(path, state: dict) -> Path:
    """Write nested ``state`` to ``path`` atomically (temp file in the same folder + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: _to_array(name, value) for name, value in flatten(state).items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; use normal permissions
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # the data must be on disk before the rename makes it current
        os.replace(tmp, path)
    except BaseException:  # including KeyboardInterrupt: never leave a half-written temp file
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` back into nested dicts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with np.load(path, allow_pickle=False) as data:
        flat = {name: _from_array(data[name]) for name in data.files}
    return unflatten(flat)


def rng_state(generator: np.random.Generator) -> str:
    """JSON text of a numpy Generator's bit-generator state (its integers exceed 64 bits)."""
    return json.dumps(generator.bit_generator.state)


def set_rng_state(generator: np.random.Generator, text: str) -> None:
    """Restore a state produced by :func:`rng_state`."""
    generator.bit_generator.state = json.loads(text)
