"""Dropout: gradient check with a fixed mask, statistics, eval identity, seeding and errors."""
import numpy as np
import pytest

from minidl import backend, init
from minidl import layers as L
from minidl.gradcheck import gradcheck_layer

GRAD_TOL = 1e-6  # with the mask fixed, dropout is linear in x


def test_gradcheck_with_fixed_mask():
    layer = L.Dropout(0.4)

    def reseed():  # every forward of the check draws the same mask
        layer.rng = np.random.default_rng(7)

    x = np.random.default_rng(0).standard_normal((4, 3, 5))
    errors = gradcheck_layer(layer, x, before_forward=reseed)
    assert errors["x"] < GRAD_TOL, errors
    reseed()
    y = layer(x)
    assert 0 < np.count_nonzero(y == 0) < y.size  # the mask really dropped some units


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_statistics(p):
    layer = L.Dropout(p, rng=np.random.default_rng(0))
    x = np.ones((400, 500), np.float32)
    y = layer(x)
    kept = y != 0
    # 200k Bernoulli draws: the kept fraction has std <= 0.0012, so 0.006 is a 5-sigma bound.
    assert abs(kept.mean() - (1 - p)) < 0.006
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-6)  # inverted scaling
    assert abs(y.mean() - 1) < 0.006 / (1 - p)  # the expectation is preserved


def test_backward_uses_the_forward_mask():
    layer = L.Dropout(0.5, rng=np.random.default_rng(1))
    x = np.random.default_rng(2).uniform(1, 2, (6, 7))
    y = layer(x)
    dout = np.random.default_rng(3).standard_normal(x.shape)
    dout_copy = dout.copy()
    dx = layer.backward(dout)
    np.testing.assert_allclose(dx, dout * (y / x))
    np.testing.assert_array_equal(dout, dout_copy)


def test_eval_is_identity_and_train_comes_back():
    layer = L.Dropout(0.5)
    x = np.random.default_rng(0).standard_normal((5, 5))
    layer.eval()
    assert layer(x) is x
    dout = np.ones_like(x)
    assert layer.backward(dout) is dout
    layer.train()
    assert np.count_nonzero(layer(x) == 0) > 0


def test_p_zero_is_identity_in_training():
    x = np.random.default_rng(0).standard_normal((5, 5))
    np.testing.assert_array_equal(L.Dropout(0.0)(x), x)


def test_same_seed_same_mask_and_resume():
    x = np.ones((20, 30))
    a = L.Dropout(0.5, rng=np.random.default_rng(11))
    b = L.Dropout(0.5, rng=11)  # an int seed is accepted too
    np.testing.assert_array_equal(a(x), b(x))
    assert not np.array_equal(a(x), L.Dropout(0.5, rng=12)(x))
    # Checkpointing the generator state resumes the exact sequence of masks.
    state = a.rng.bit_generator.state
    first = a(x)
    a.rng.bit_generator.state = state
    np.testing.assert_array_equal(a(x), first)


def test_default_rng_follows_init_seed(monkeypatch):
    monkeypatch.setattr(init, "_rng", init.default_rng())  # restore the global afterwards
    x = np.ones((10, 10))
    init.seed(3)
    first = L.Dropout(0.5)(x)
    init.seed(3)
    np.testing.assert_array_equal(L.Dropout(0.5)(x), first)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_device(xp, dtype):
    x = xp.ones((8, 9), dtype=dtype)
    y = L.Dropout(0.3, rng=5)(x)
    assert y.dtype == dtype and type(y) is type(x)
    # Masks come from a CPU generator, so every device and dtype sees the same one.
    reference = L.Dropout(0.3, rng=5)(np.ones((8, 9)))
    np.testing.assert_allclose(backend.asnumpy(y), reference, rtol=1e-6)
    layer = L.Dropout(0.3, rng=5)
    layer(x)
    assert layer.backward(xp.ones_like(x)).dtype == dtype


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, "half", None])
def test_bad_p(p):
    with pytest.raises(ValueError, match=r"Dropout: p must"):
        L.Dropout(p)


def test_backward_errors():
    layer = L.Dropout(0.5)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones(3))
    layer(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Dropout\(p=0.5\): backward expected dout of shape "
                                         r"\(2, 3\), got \(3, 2\)"):
        layer.backward(np.ones((3, 2)))
    with pytest.raises(ValueError, match="expected an array"):
        layer([1.0, 2.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eval_matches_torch(dtype):
    # Training masks come from different generators, so only eval mode can agree exactly.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5)).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    layer = L.Dropout(0.3).eval()
    y, dx = layer(x), layer.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch.nn.Dropout(0.3).eval()(xt)
    yt.backward(torch.from_numpy(dout))
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, xt.grad.numpy())


def test_the_mask_is_made_where_x_lives_from_one_seed(xp, monkeypatch):
    """Only a 64-bit seed comes from the host: the mask is hashed on x's device, so no
    mask is copied host -> device on a GPU, and every device computes the same bits."""
    from minidl.functional import dropout as F

    def no_transfer(*args, **kwargs):
        raise AssertionError("dropout copied an array between devices")

    monkeypatch.setattr(backend, "to_device", no_transfer)
    keep = F.dropout_mask((50, 40), 0.25, 2 ** 63 + 12345, xp)
    assert type(keep) is type(xp.zeros(1)) and keep.dtype == bool
    np.testing.assert_array_equal(backend.asnumpy(keep),
                                  backend.asnumpy(F.dropout_mask((50, 40), 0.25, 2 ** 63 + 12345, np)))
    assert abs(float(keep.mean()) - 0.75) < 0.03           # 2,000 draws: > 4 sigma
    other = F.dropout_mask((50, 40), 0.25, 2 ** 63 + 12346, xp)
    assert 0.3 < float((keep == other).mean()) < 0.9        # another seed, another mask
    layer = L.Dropout(0.5, rng=3)
    layer(xp.ones((6, 7), dtype=xp.float32))                # the layer does not copy either


def test_functional_dropout_refuses_non_float_input():
    from minidl.functional.dropout import dropout_forward
    with pytest.raises(TypeError, match="dropout_forward: input must be a floating-point"):
        dropout_forward(np.ones((2, 3), dtype=np.int64), 0.5, seed=0)
