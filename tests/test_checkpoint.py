"""Atomic npz checkpoints: nested round trips, RNG states, and interrupted writes."""
import numpy as np
import pytest

from minidl import checkpoint
from minidl.checkpoint import (flatten, load_checkpoint, rng_state, save_checkpoint,
                               set_rng_state, unflatten)


def _state(scale=1.0):
    return {
        "model": {"features.0.weight": scale * np.arange(6, dtype=np.float32).reshape(2, 3),
                  "bn.running_var": np.ones(3, dtype=np.float64)},
        "optim": {"step": 7, "lr": 0.01, "0.exp_avg": np.zeros((2, 3), np.float32)},
        "epoch": 3, "best_val_acc": 0.5, "config": '{"model": "vgg08"}',
    }


def test_round_trip_keeps_values_dtypes_and_nesting(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt" / "latest.npz", _state())
    loaded = load_checkpoint(path)
    expected = _state()
    assert loaded.keys() == expected.keys()
    for key in ("epoch", "best_val_acc", "config"):
        assert loaded[key] == expected[key] and type(loaded[key]) is type(expected[key])
    for part in ("model", "optim"):
        for key, value in expected[part].items():
            np.testing.assert_array_equal(loaded[part][key], value)
            assert np.asarray(loaded[part][key]).dtype == np.asarray(value).dtype
    assert not list((tmp_path / "ckpt").glob("*.tmp"))


def test_flatten_is_inverted_by_unflatten():
    nested = {"a": {"b": {"c": 1}, "d": 2}, "e": 3}
    assert flatten(nested) == {"a/b/c": 1, "a/d": 2, "e": 3}
    assert unflatten(flatten(nested)) == nested
    with pytest.raises(ValueError, match="without '/'"):
        flatten({"a/b": 1})


def test_objects_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError, match="'extra/x'.*JSON-encode"):
        save_checkpoint(tmp_path / "c.npz", {"extra": {"x": {1, 2}}})
    assert not list(tmp_path.iterdir())


def test_rng_state_round_trip():
    gen = np.random.default_rng(123)
    gen.random(5)
    text = rng_state(gen)
    expected = gen.random(4)
    other = np.random.default_rng(0)
    set_rng_state(other, text)
    np.testing.assert_array_equal(other.random(4), expected)


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failure):
    path = tmp_path / "latest.npz"
    save_checkpoint(path, _state(1.0))
    real_savez = np.savez

    def half_write(f, **arrays):
        real_savez(f, **arrays)
        f.seek(f.tell() // 2)
        f.truncate()             # the file on disk is now a corrupt half npz
        raise failure

    monkeypatch.setattr(checkpoint.np, "savez", half_write)
    with pytest.raises(type(failure)):
        save_checkpoint(path, _state(2.0))
    monkeypatch.undo()
    loaded = load_checkpoint(path)       # still the old, complete checkpoint
    np.testing.assert_array_equal(loaded["model"]["features.0.weight"],
                                  _state(1.0)["model"]["features.0.weight"])
    assert [p.name for p in tmp_path.iterdir()] == ["latest.npz"]  # temp file cleaned up


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.npz")
