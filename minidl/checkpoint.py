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
import socket
import sys
import tempfile
import time
import zipfile
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


# ---------------------------------------------------------------------- the run folder
class RunFolderError(Exception):
    """A run folder that cannot be used as asked; the message says which file and what to do."""


# Fields of a run's config that a resumed run may change (everything else must match).
RESUMABLE = ("epochs", "resume", "no_progress", "no_plots", "device", "out")

_TEMP_SUFFIX = ".tmp"


def _write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunFolder:
    """The folder of one training run: its paths, its lock, its config and its checkpoints.

    Layout (names are attributes): ``config.json``, ``metrics.csv``, ``grad_flow.csv``,
    ``test_summary.json``, ``checkpoints/latest.npz`` (every epoch and on interruption),
    ``checkpoints/best.npz`` (best validation accuracy), ``.minidl.lock`` (held while a run
    writes here).

    Use::

        with RunFolder(out) as run:            # refuses a foreign folder, locks, cleans up
            run.check_config(cfg.to_dict())    # resumable? (differences name the options)
            state = run.load_latest()          # None for a new run
            ...
            run.save(state, best=improved)     # latest (and best) as one consistent step
            best = run.load_best()             # the best-validation state latest points at

    Consistency: ``latest.npz`` is the commit record. A new best state is first written to
    ``best.pending.npz``, then ``latest.npz`` (naming ``best_epoch``) replaces the old one,
    then the pending file becomes ``best.npz``. Opening the folder finishes or undoes an
    interrupted save from what ``latest.npz`` says, so every crash point leaves a
    ``best.npz`` that is the model of ``latest``'s ``best_epoch``.
    """

    LOCK_NAME = ".minidl.lock"

    def __init__(self, path):
        self.path = Path(os.path.expanduser(os.fspath(path)))
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.csv"
        self.grad_flow_path = self.path / "grad_flow.csv"
        self.summary_path = self.path / "test_summary.json"
        self.checkpoint_dir = self.path / "checkpoints"
        self.latest_path = self.checkpoint_dir / "latest.npz"
        self.best_path = self.checkpoint_dir / "best.npz"
        self.pending_best_path = self.checkpoint_dir / "best.pending.npz"
        self.lock_path = self.path / self.LOCK_NAME
        self._lock_file = None
        self._created = None

    # ------------------------------------------------------------------ opening
    def __enter__(self) -> "RunFolder":
        return self.open()

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def open(self) -> "RunFolder":
        """Check the folder is a run folder (or new/empty), create it, lock it, recover it."""
        self._check_usable()
        # The topmost folder this call creates (removed again if the run never starts).
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self._created = missing[-1] if missing else None
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunFolderError(f"cannot create the run folder {self.path}: "
                                 f"{err.strerror or err}") from None
        self._lock()
        try:
            self._recover()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release the lock (the lock file stays; an unlocked one is free to take). A folder
        this object created and nothing was written to (a run refused before it started) is
        removed again."""
        if self._lock_file is None:
            return
        if self._created is not None and not self.config_path.exists() and \
                not any(self._iter(self.checkpoint_dir)):
            self.checkpoint_dir.rmdir()
            self.lock_path.unlink()
            for folder in (self.path, *self.path.parents):
                if any(folder.iterdir()):
                    break
                folder.rmdir()
                if folder == self._created:
                    break
        self._lock_file.close()  # closing the descriptor releases the flock
        self._lock_file = None

    def is_run_folder(self) -> bool:
        """True when ``config.json`` here is a minidl run configuration."""
        try:
            saved = json.loads(self.config_path.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(saved, dict) and "model" in saved and "epochs" in saved

    def _check_usable(self) -> None:
        """Refuse a file, or a folder that holds other things than a run (never write into it)."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"--out {self.path} is a file, not a folder")
        if not self.path.is_dir() or self.is_run_folder():
            return
        if self.config_path.exists() and self.latest_path.exists():
            self.saved_config()  # a run whose config.json is damaged: say so
            raise RunFolderError(f"{self.config_path} is not a minidl run configuration; "
                                 "restore it, or use another --out")
        ours = {self.LOCK_NAME, self.checkpoint_dir.name}
        own_temp = tuple(f".{p.name}." for p in (self.config_path, self.metrics_path,
                                                  self.grad_flow_path, self.summary_path))
        foreign = sorted(p.name for p in self.path.iterdir() if p.name not in ours and not
                         (p.name.startswith(own_temp) and p.name.endswith(_TEMP_SUFFIX)))
        if foreign or any(not p.name.endswith((".npz", _TEMP_SUFFIX))
                          for p in self._iter(self.checkpoint_dir)):
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise RunFolderError(
                f"--out {self.path} already exists and is not a minidl run folder (it holds "
                f"{shown or 'other files in checkpoints/'}); nothing was written. Choose a new "
                "or empty folder")
        if self.config_path.exists():  # a config.json that is not ours, or damaged
            raise RunFolderError(f"{self.config_path} is unreadable or not a minidl config")

    @staticmethod
    def _iter(folder: Path):
        return folder.iterdir() if folder.is_dir() else ()

    # ------------------------------------------------------------------ the lock
    def _lock(self) -> None:
        """Take ``.minidl.lock`` or refuse, naming the run that holds it.

        The lock is an advisory ``flock`` on the file: the kernel drops it when its process
        ends in any way (even SIGKILL), so a lock left by a dead run is free to take and is
        never mistaken for a live one. The file's text (pid, host, start, command) is only
        for the message.
        """
        try:
            f = open(self.lock_path, "a+")
        except OSError as err:
            raise RunFolderError(f"cannot write to the run folder {self.path}: "
                                 f"{err.strerror or err}") from None
        if not _try_flock(f):
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunFolderError(f"{self.path} is in use by another run ({holder}); wait for "
                                 "it to finish or stop it, or choose another --out")
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}\n")
        f.flush()
        self._lock_file = f

    @property
    def locked(self) -> bool:
        return self._lock_file is not None

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> None:
        """Remove temp files of killed writes; finish or undo an interrupted ``save``."""
        for folder in (self.path, self.checkpoint_dir):
            for p in self._iter(folder):
                if p.name.startswith(".") and p.name.endswith(_TEMP_SUFFIX):
                    p.unlink(missing_ok=True)  # a write killed before its os.replace
        if not self.pending_best_path.exists():
            return
        latest = self.load_latest()
        pending_epoch = _read_epoch(self.pending_best_path)
        if latest is not None and pending_epoch is not None and \
                int(latest["best_epoch"]) == pending_epoch:
            os.replace(self.pending_best_path, self.best_path)  # latest was written: finish
        else:
            self.pending_best_path.unlink()                     # latest was not: undo

    # ------------------------------------------------------------------ config
    def saved_config(self) -> dict | None:
        """The run's ``config.json`` as a dict (None when there is none)."""
        if not self.config_path.is_file():
            return None
        try:
            saved = json.loads(self.config_path.read_text())
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            raise RunFolderError(
                f"{self.config_path} is damaged ({err}); restore it, or delete the folder's "
                "config.json to start this run afresh without --resume") from None
        return saved

    def config_differences(self, config: dict, may_change=RESUMABLE) -> list:
        """``[(field, saved value, new value)]`` for options that may not change on resume.

        Both sides are first read as a TrainConfig where they are one, so a config.json of
        an older minidl (options added since, renamed ones, ``augment: true``) compares
        equal to the same run described today."""
        saved, config = (_as_current(c) for c in (self.saved_config() or {}, config))
        return [(k, saved.get(k), config.get(k)) for k in sorted(set(saved) | set(config))
                if k not in may_change and saved.get(k) != config.get(k)]

    def check_config(self, config: dict, may_change=RESUMABLE) -> None:
        """RunFolderError listing every option that differs from the run's ``config.json``."""
        diffs = self.config_differences(config, may_change)
        if diffs:
            listed = "; ".join(f"--{k.replace('_', '-')}: {old!r} in config.json, {new!r} now"
                               for k, old, new in diffs)
            changeable = ", ".join(f"--{k.replace('_', '-')}" for k in may_change
                                   if k not in ("resume", "out"))
            raise RunFolderError(f"cannot resume {self.path}: its configuration differs "
                                 f"({listed}). Only {changeable} may change when resuming; "
                                 "use another --out for a new run")

    def write_config(self, config: dict) -> None:
        self._require_lock()
        _write_text_atomically(self.config_path, json.dumps(config, indent=2) + "\n")

    def write_summary(self, summary: dict) -> None:
        """Write ``test_summary.json`` (atomically)."""
        self._require_lock()
        _write_text_atomically(self.summary_path, json.dumps(summary, indent=2) + "\n")

    def status(self, config: dict, may_change=RESUMABLE) -> str:
        """"new" (no checkpoint), "resume" (a checkpoint to continue) or "done" (finished with
        this configuration and at least ``config["epochs"]`` epochs). Needs no lock."""
        if not self.latest_path.is_file():
            return "new"
        if self.summary_path.is_file() and self.is_run_folder() and \
                not self.config_differences(config, may_change):
            try:
                epochs = json.loads(self.summary_path.read_text()).get("epochs") or 0
            except (OSError, ValueError):
                epochs = 0
            if epochs >= int(config.get("epochs", 0)):
                return "done"
        return "resume"

    # ------------------------------------------------------------------ checkpoints
    def has_checkpoint(self) -> bool:
        return self.latest_path.is_file()

    def load_latest(self) -> dict | None:
        """The state in ``latest.npz`` (None when there is none); a clear error if damaged."""
        if not self.latest_path.is_file():
            return None
        return self._load(self.latest_path)

    def load_best(self) -> dict | None:
        """The best-validation state: ``best.npz`` when it is the model of ``latest``'s
        ``best_epoch`` (always, after a minidl save), else None."""
        latest = self.load_latest()
        if latest is None or not self.best_path.is_file():
            return None
        best = self._load(self.best_path)
        return best if int(best["epoch"]) == int(latest["best_epoch"]) else None

    def save(self, state: dict, best: bool = False) -> None:
        """Write ``state`` as ``latest.npz`` and, when ``best``, as ``best.npz``: see the class
        docstring for why no crash point leaves the two inconsistent. ``state`` must hold
        ``epoch`` and ``best_epoch``."""
        self._require_lock()
        if best:
            save_checkpoint(self.pending_best_path, state)
        save_checkpoint(self.latest_path, state)          # the commit point
        if best:
            os.replace(self.pending_best_path, self.best_path)

    def start_afresh(self) -> None:
        """Remove the checkpoints of an abandoned run so a new run starts clean here."""
        self._require_lock()
        for p in (self.latest_path, self.best_path, self.pending_best_path):
            p.unlink(missing_ok=True)

    def _load(self, path: Path) -> dict:
        try:
            return load_checkpoint(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
            raise RunFolderError(
                f"{path} is damaged ({type(err).__name__}: {err}); minidl writes checkpoints "
                "atomically, so it was changed by something else. Delete it to start the run "
                "afresh (or use another --out)") from None

    def _require_lock(self) -> None:
        if not self.locked:
            raise RuntimeError(f"RunFolder({str(self.path)!r}) must be opened (with ... as run) "
                               "before writing")

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r}, locked={self.locked})"


def _as_current(config: dict) -> dict:
    """``config`` as today's TrainConfig writes it (defaults filled in, old spellings read),
    or unchanged when it is not a training configuration."""
    from .config import TrainConfig  # here, not above: config.py need not load for checkpoints
    try:
        return TrainConfig.from_dict(config).to_dict()
    except (TypeError, ValueError):
        return config


def _read_epoch(path: Path):
    """The ``epoch`` entry of a checkpoint, or None if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return int(data["epoch"])
    except Exception:  # a damaged pending file is simply discarded
        return None


def _try_flock(f) -> bool:
    """Take an exclusive advisory lock on ``f`` without waiting; True when taken."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs there are not protected from each other
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
