"""Batch augmentation: crop, flip and random erasing statistics, shapes, and no in-place edits."""
import numpy as np
import pytest

from minidl import backend
from minidl.data import (Compose, RandomCrop, RandomErasing, RandomFlip, make_augmentation,
                         random_crop, random_erasing, random_flip)
from minidl.data.augment import JITTER_PIXELS, augmentation_names, named_augmentation


def batch(n=64, c=3, h=8, w=8, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).uniform(1, 2, size=(n, c, h, w)).astype(dtype)


@pytest.mark.parametrize("padding", [1, 3])
def test_random_crop_is_a_shift_with_zero_fill(padding):
    x = batch(n=200)
    out = random_crop(x, padding, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    offsets = set()
    for i in range(len(x)):  # reference check, one image at a time, in the test only
        matches = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                   if np.array_equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert len(matches) == 1  # x is positive, so the zero border pins down the offset
        offsets.add(matches[0])
    assert len(offsets) == (2 * padding + 1) ** 2  # every offset occurs


def test_random_crop_offsets_are_uniform():
    """Each of the (2p + 1)^2 shifts is equally likely (binomial bounds of 4 standard deviations)."""
    n, padding, size = 20_000, 2, 8
    # every pixel holds its own position, so the centre pixel of a crop names the shift
    x = np.broadcast_to(1 + np.arange(size * size, dtype=np.float32).reshape(1, 1, size, size),
                        (n, 1, size, size))
    centre = random_crop(x, padding, np.random.default_rng(5))[:, 0, size // 2, size // 2]
    source = centre.astype(np.int64) - 1
    dy, dx = source // size - size // 2, source % size - size // 2
    assert dy.min() == dx.min() == -padding and dy.max() == dx.max() == padding
    k = 2 * padding + 1
    counts = np.bincount((dy + padding) * k + dx + padding, minlength=k * k)
    expected = n / k ** 2
    assert np.abs(counts - expected).max() < 4 * np.sqrt(expected * (1 - 1 / k ** 2))


def test_random_crop_zero_padding_is_identity_copy():
    x = batch()
    out = random_crop(x, 0, np.random.default_rng(0))
    np.testing.assert_array_equal(out, x)
    assert out is not x


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_random_flip_rate_and_content(p):
    x = batch(n=4000, h=4, w=5)
    out = random_flip(x, np.random.default_rng(1), p=p)
    flipped = np.array([np.array_equal(o, i[..., ::-1]) for o, i in zip(out, x)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert (flipped ^ kept).all()  # every image is either mirrored or unchanged
    assert abs(flipped.mean() - p) < 0.03  # binomial std <= 0.008 at n = 4000


def _erased_masks(x, out):
    """Per image, which pixels changed (on any channel)."""
    return (out != x).any(axis=1)


def test_random_erasing_area_rate_and_rectangle():
    x = batch(n=4000, c=3, h=32, w=32)
    out = random_erasing(x, np.random.default_rng(2))
    masks = _erased_masks(x, out)
    erased = masks.any(axis=(1, 2))
    assert abs(erased.mean() - 0.5) < 0.03
    fractions = masks[erased].mean(axis=(1, 2))
    assert fractions.min() >= 0.02 and fractions.max() <= 0.33
    assert fractions.mean() == pytest.approx(0.175, abs=0.02)  # ~ uniform on (0.02, 0.33)
    for m in masks[erased][:200]:  # each erased region is one solid rectangle
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        assert m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
        assert m.sum() == len(rows) * len(cols)
    # all channels erased together, with standard normal values
    values = out[:, 0][masks]
    assert (out != x).all(axis=1)[masks].all()
    assert abs(values.mean()) < 0.02 and abs(values.std() - 1) < 0.02
    aspect = []
    for m in masks[erased]:
        aspect.append(m.any(axis=1).sum() / m.any(axis=0).sum())
    aspect = np.log(aspect)
    assert aspect.min() >= np.log(0.3) - 0.2 and aspect.max() <= np.log(3.3) + 0.2
    assert abs(np.mean(aspect) - np.log(np.sqrt(0.3 * 3.3))) < 0.05  # log-uniform: centred


def test_random_erasing_constant_value_and_probability_one():
    x = batch(n=50, h=28, w=28, dtype=np.float64)
    out = random_erasing(x, np.random.default_rng(3), p=1.0, value=0.0)
    masks = _erased_masks(x, out)
    assert masks.any(axis=(1, 2)).all() and out.dtype == np.float64
    assert (out[:, 0][masks] == 0).all()


@pytest.mark.parametrize("fn", [
    lambda x, rng: random_crop(x, 2, rng), random_flip, random_erasing,
    make_augmentation(crop_padding=2, flip=True, erasing=True),
])
def test_input_is_never_modified(fn):
    x = batch()
    before = x.copy()
    out = fn(x, np.random.default_rng(0))
    np.testing.assert_array_equal(x, before)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not np.shares_memory(out, x)


def test_make_augmentation_and_compose():
    assert make_augmentation() is None
    aug = make_augmentation(crop_padding=4, flip=True, erasing=0.25)
    assert [type(t) for t in aug.transforms] == [RandomCrop, RandomFlip, RandomErasing]
    assert aug.transforms[2].p == 0.25 and aug.transforms[0].padding == 4
    assert "RandomCrop(padding=4)" in repr(aug)
    # Compose draws from the shared Generator in order: same as calling the functions in turn
    x = batch()
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    expected = random_erasing(random_flip(random_crop(x, 4, r2), r2), r2, p=0.25)
    np.testing.assert_array_equal(aug(x, r1), expected)
    assert Compose([])(x, r1) is x


@pytest.mark.parametrize("call, match", [
    (lambda x, r: random_crop(x[0], 1, r), r"random_crop.*\(N, C, H, W\).*\(3, 8, 8\)"),
    (lambda x, r: random_crop(x, -1, r), "padding"),
    (lambda x, r: random_flip(x, r, p=1.5), "random_flip.*p"),
    (lambda x, r: random_erasing(x, r, scale=(0.5, 0.2)), "scale"),
    (lambda x, r: random_erasing(x, r, value="mean"), "value"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(batch(), np.random.default_rng(0))


def test_same_result_on_every_backend(xp):
    """Random numbers come from the numpy Generator, so CPU and GPU batches agree exactly."""
    x = batch(n=16)
    aug = make_augmentation(crop_padding=2, flip=True, erasing=True)
    out = aug(xp.asarray(x), np.random.default_rng(4))
    assert backend.get_array_module(out) is xp
    np.testing.assert_allclose(backend.asnumpy(out), aug(x, np.random.default_rng(4)), rtol=0, atol=0)


# Augmentations by name (the training CLI's --augment list, issue 11).
def test_named_augmentation_draws_as_the_flags_did():
    x = batch()
    old = make_augmentation(crop_padding=4, flip=True, erasing=True)
    for names in (("crop", "flip", "erase"), "erase,flip crop", ["flip", "erase", "crop"]):
        new = named_augmentation(names)
        np.testing.assert_array_equal(new(x, np.random.default_rng(5)),
                                      old(x, np.random.default_rng(5)))
    flip_only = named_augmentation("flip")
    assert [type(t) for t in flip_only.transforms] == [RandomFlip]
    np.testing.assert_array_equal(flip_only(x, np.random.default_rng(1)),
                                  random_flip(x, np.random.default_rng(1)))
    assert named_augmentation(()) is None and named_augmentation("") is None


def test_jitter_shifts_by_at_most_two_pixels_with_zero_fill():
    assert JITTER_PIXELS == 2
    x = batch(n=300, c=1, h=10, w=10)
    out = named_augmentation("jitter")(x, np.random.default_rng(0))
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    shifts = []
    for img, shifted in zip(padded, out):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if np.array_equal(img[:, dy:dy + 10, dx:dx + 10], shifted)]
        assert len(found) == 1  # the image, moved by (dy - 2, dx - 2), zeros where it left
        shifts.append(found[0])
    assert set(shifts) == {(dy, dx) for dy in range(5) for dx in range(5)}  # all 25 shifts


def test_unknown_augmentation_name_is_named():
    with pytest.raises(ValueError, match="unknown augmentation.*'rotate'.*crop, jitter, flip, "
                                         "erase"):
        augmentation_names("crop,rotate")
    assert augmentation_names("flip crop,flip") == ("crop", "flip")
