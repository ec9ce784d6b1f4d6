"""BatchIterator: every sample once per epoch, reshuffling, checkpointable Generator, augmentation."""
import numpy as np
import pytest

from minidl.data import BatchIterator, make_augmentation


def make_data(n=103):
    x = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
    return x, np.arange(n, dtype=np.int64)


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_sample_exactly_once_per_epoch(shuffle):
    x, y = make_data()
    it = BatchIterator(x, y, batch_size=10, shuffle=shuffle, rng=0)
    assert len(it) == 11
    for _ in range(3):
        batches = list(it)
        assert len(batches) == 11 and [len(b[1]) for b in batches] == [10] * 10 + [3]
        seen = np.concatenate([yb for _, yb in batches])
        assert sorted(seen.tolist()) == list(range(103))
        for xb, yb in batches:  # x and y stay aligned
            np.testing.assert_array_equal(xb[:, 0, 0, 0], yb)
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(103))


def test_drop_last():
    x, y = make_data()
    it = BatchIterator(x, y, batch_size=10, rng=0, drop_last=True)
    batches = list(it)
    assert len(it) == len(batches) == 10 and it.num_samples == 100
    assert all(len(yb) == 10 for _, yb in batches)
    assert len(set(np.concatenate([yb for _, yb in batches]).tolist())) == 100


def test_reshuffled_each_epoch_and_seeded():
    x, y = make_data()
    first = np.concatenate([yb for _, yb in BatchIterator(x, y, 10, rng=5)])
    it = BatchIterator(x, y, 10, rng=5)
    epoch1 = np.concatenate([yb for _, yb in it])
    epoch2 = np.concatenate([yb for _, yb in it])
    np.testing.assert_array_equal(first, epoch1)
    assert not np.array_equal(epoch1, epoch2)


def test_generator_state_restores_an_epoch_with_augmentation():
    x, y = make_data()
    aug = make_augmentation(crop_padding=1, flip=True, erasing=True)
    it = BatchIterator(x, y, 16, rng=np.random.default_rng(1), augment=aug)
    list(it)
    state = it.rng.bit_generator.state
    epoch = list(it)
    it.rng.bit_generator.state = state
    replay = list(it)
    for (xa, ya), (xb, yb) in zip(epoch, replay):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_augment_is_applied_per_batch_and_input_untouched():
    x, y = make_data(40)
    before = x.copy()
    calls = []

    def negate(xb, rng):
        calls.append(len(xb))
        return -xb

    batches = list(BatchIterator(x, y, 16, shuffle=False, augment=negate))
    assert calls == [16, 16, 8]
    np.testing.assert_array_equal(batches[0][0], -x[:16])
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
    ({"batch_size": 4, "augment": "flip"}, "augment"),
])
def test_bad_arguments(kwargs, match):
    x, y = make_data(10)
    with pytest.raises(ValueError, match=match):
        BatchIterator(x, y, **kwargs)


def test_length_mismatch():
    with pytest.raises(ValueError, match=r"\(5, 1, 2, 2\).*\(4,\)"):
        BatchIterator(make_data(5)[0], np.arange(4), 2)
