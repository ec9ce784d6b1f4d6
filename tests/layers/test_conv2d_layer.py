"""Conv2d layer: gradient checks, PyTorch parity (init, repr, numbers), method switch, errors."""
import numpy as np
import pytest

from minidl import init
from minidl.functional.conv import METHODS
from minidl.gradcheck import gradcheck_layer, rel_error
from minidl.layers import Conv2d

GRAD_TOL = 1e-6  # float64 centred differences on a bilinear op


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=1),
    dict(in_channels=2, out_channels=2, kernel_size=(2, 3), stride=(2, 1), dilation=(1, 2),
         bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, padding=(1, 0), groups=2),
    dict(in_channels=3, out_channels=3, kernel_size=1, groups=3),
], ids=["3x3-same", "2x3-stride-dil-nobias", "groups2", "depthwise-1x1"])
@pytest.mark.parametrize("method", METHODS)
def test_gradcheck(method, kwargs, rng):
    layer = Conv2d(**kwargs, method=method, rng=rng)
    x = rng.standard_normal((2, kwargs["in_channels"], 5, 6))
    errors = gradcheck_layer(layer, x)
    expected = {"x", "weight"} | ({"bias"} if kwargs.get("bias", True) else set())
    assert set(errors) == expected
    assert max(errors.values()) < GRAD_TOL, errors


def test_parameters_use_pytorch_default_init():
    layer = Conv2d(6, 8, (3, 2), groups=2, rng=np.random.default_rng(5))
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.weight.shape == (8, 3, 3, 2) and layer.bias.shape == (8,)
    assert layer.weight.data.dtype == np.float32 and layer.bias.data.dtype == np.float32
    rng = np.random.default_rng(5)  # same seed, same draws in the same order
    np.testing.assert_array_equal(layer.weight.data, init.pytorch_default((8, 3, 3, 2), rng))
    np.testing.assert_array_equal(layer.bias.data, init.pytorch_default_bias((8, 3, 3, 2), rng))
    bound = 1 / np.sqrt(3 * 3 * 2)  # fan_in = in_channels/groups * kh * kw
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.8 * bound  # uniform over the whole range


def test_no_bias_registers_only_the_weight():
    layer = Conv2d(2, 3, 3, bias=False)
    assert layer.bias is None
    assert list(layer.state_dict()) == ["weight"]


@pytest.mark.parametrize("args, kwargs", [
    ((3, 16, 3), {}),
    ((4, 8, (2, 3)), dict(stride=2, padding=1, dilation=(2, 1), groups=2, bias=False)),
    ((4, 4, 3), dict(padding=(0, 1), groups=4)),
])
def test_repr_matches_pytorch(args, kwargs):
    torch = pytest.importorskip("torch")
    assert repr(Conv2d(*args, **kwargs)) == repr(torch.nn.Conv2d(*args, **kwargs))


def test_repr_shows_a_non_default_method():
    assert "method='fft'" in repr(Conv2d(1, 1, 3, method="fft"))


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("method", METHODS)
def test_matches_torch_conv2d_module(method, dtype, tol, rng):
    torch = pytest.importorskip("torch")
    ref = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    ref = ref.to(torch.float64 if dtype == np.float64 else torch.float32)
    layer = Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2,
                   method=method).astype(dtype)
    layer.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = rng.standard_normal((3, 4, 9, 7)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    dout = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(dout))
    y = layer(x)
    dx = layer.backward(dout)
    assert y.dtype == dtype and dx.dtype == dtype
    assert rel_error(y, yt.detach().numpy()) < tol
    assert rel_error(dx, xt.grad.numpy()) < tol
    assert rel_error(layer.weight.grad, ref.weight.grad.numpy()) < tol
    assert rel_error(layer.bias.grad, ref.bias.grad.numpy()) < tol


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_dtype_follows_input_with_float32_parameters(dtype, rng):
    layer = Conv2d(2, 3, 3, padding=1, rng=rng)
    x = rng.standard_normal((2, 2, 5, 4)).astype(dtype)
    y = layer(x)
    assert y.dtype == dtype and layer.backward(np.ones_like(y)).dtype == dtype
    assert layer.weight.grad.dtype == np.float32  # gradients keep the parameter's dtype


def test_method_can_be_switched_after_construction(rng):
    layer = Conv2d(3, 4, 3, stride=2, padding=1, rng=rng).astype(np.float64)
    x = rng.standard_normal((2, 3, 7, 6))
    dout = rng.standard_normal((2, 4, 4, 3))
    results = {}
    for method in METHODS:
        layer.method = method
        layer.zero_grad()
        y = layer(x)
        dx = layer.backward(dout)
        results[method] = (y, dx, layer.weight.grad.copy(), layer.bias.grad.copy())
    for method in METHODS[1:]:
        for got, ref in zip(results[method], results["loops"]):
            assert rel_error(got, ref) < 1e-12
    with pytest.raises(ValueError, match=r"unknown method 'direct'.*'loops', 'im2col', 'fft'"):
        layer.method = "direct"
    assert layer.method == METHODS[-1]


def test_backward_accumulates_and_leaves_dout_untouched(rng):
    layer = Conv2d(2, 2, 3, padding=1, rng=rng).astype(np.float64)
    x = rng.standard_normal((2, 2, 4, 5))
    dout = rng.standard_normal((2, 2, 4, 5))
    dout_given = dout.copy()
    layer(x)
    layer.backward(dout)
    once = (layer.weight.grad.copy(), layer.bias.grad.copy())
    layer.backward(dout)
    assert np.array_equal(dout, dout_given)
    np.testing.assert_allclose(layer.weight.grad, 2 * once[0], rtol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, 2 * once[1], rtol=1e-12)


def test_backward_before_forward_raises():
    layer = Conv2d(1, 1, 3)
    with pytest.raises(RuntimeError, match=r"Conv2d\(1, 1.*backward called before forward"):
        layer.backward(np.zeros((1, 1, 2, 2)))


@pytest.mark.parametrize("shape, pattern", [
    ((3, 5, 5), r"expected input of shape \(N, C, H, W\), got \(3, 5, 5\)"),
    ((2, 2, 5, 5), r"expected 3 input channels .*got input of shape \(2, 2, 5, 5\)"),
    ((2, 3, 2, 5), r"larger than the padded input \(2, 5\)"),
])
def test_bad_input_names_the_layer(shape, pattern):
    layer = Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"^Conv2d\(3, 4, kernel_size=\(3, 3\).*" + pattern):
        layer(np.zeros(shape, dtype=np.float32))


def test_wrong_dout_shape_names_the_layer():
    layer = Conv2d(1, 2, 3)
    layer(np.zeros((1, 1, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"^Conv2d\(1, 2.*expected dout of shape \(1, 2, 3, 3\)"):
        layer.backward(np.zeros((1, 2, 5, 5), dtype=np.float32))


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), "groups=2 must divide"),
    (dict(in_channels=4, out_channels=3, kernel_size=3, groups=2), "groups=2 must divide"),
    (dict(in_channels=0, out_channels=3, kernel_size=3), "in_channels must be a positive int"),
    (dict(in_channels=2, out_channels=3, kernel_size=0), "kernel_size must be at least 1"),
    (dict(in_channels=2, out_channels=3, kernel_size=3, stride=(1, 0)),
     "stride must be at least 1"),
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding=-1), "padding must be at least 0"),
    (dict(in_channels=2, out_channels=3, kernel_size=3, dilation=0), "dilation must be at least 1"),
    (dict(in_channels=2, out_channels=3, kernel_size=(1, 2, 3)),
     "kernel_size must be an int or a pair"),
    (dict(in_channels=2, out_channels=3, kernel_size=True), "kernel_size must be an int or a pair"),
    (dict(in_channels=2, out_channels=3, kernel_size=(2.5, 3)),
     "kernel_size must be an int or a pair"),
    (dict(in_channels=2, out_channels=3, kernel_size=3, method="gemm"), "unknown method 'gemm'"),
])
def test_bad_hyper_parameters_raise(kwargs, pattern):
    with pytest.raises(ValueError, match="Conv2d: " + pattern):
        Conv2d(**kwargs)


def test_numpy_integer_hyper_parameters_accepted():
    layer = Conv2d(np.int64(2), 4, np.int64(3), stride=(np.int32(1), 2), padding=np.int64(1))
    assert layer.kernel_size == (3, 3) and layer.stride == (1, 2) and layer.padding == (1, 1)
    assert all(type(v) is int for v in layer.kernel_size + layer.stride + layer.padding)


def test_runs_on_the_array_module_of_its_parameters(xp, rng):
    layer = Conv2d(2, 4, 3, padding=1, groups=2, rng=rng)
    x = rng.standard_normal((2, 2, 6, 5)).astype(np.float32)
    y_cpu, dx_cpu = layer(x), layer.backward(np.ones((2, 4, 6, 5), dtype=np.float32))
    if xp is not np:
        layer.to("gpu")
    for method in METHODS:
        layer.method = method
        y = layer(xp.asarray(x))
        dx = layer.backward(xp.ones((2, 4, 6, 5), dtype=xp.float32))
        assert type(y) is type(xp.asarray(x))
        assert rel_error(y, y_cpu) < 1e-5 and rel_error(dx, dx_cpu) < 1e-5


def test_default_method_is_auto_so_the_fast_extra_speeds_training(monkeypatch):
    """Layers and models ask for 'auto': winograd where numba's kernels run, else im2col."""
    from minidl import kernels, models
    layer = Conv2d(16, 16, 3, padding=1, rng=np.random.default_rng(0))
    assert layer.method == "auto" and "method" not in repr(layer)
    convs = [m for _, m in models.build("vgg38", bn=True, residual=True).named_layers()
             if isinstance(m, Conv2d)]
    assert convs and all(c.method == "auto" for c in convs)
    x = np.ones((1, 16, 4, 4), np.float32)
    monkeypatch.setenv(kernels.ENV_VAR, "numpy")
    layer(x)
    assert layer._cache.method == "im2col"
    if kernels.numba_available():
        monkeypatch.setenv(kernels.ENV_VAR, "auto")
        layer(x)
        assert layer._cache.method == "winograd"
