"""Layer/Parameter core and containers: naming, state dicts, modes, devices, Residual."""
import copy

import numpy as np
import pytest

from minidl import backend
from minidl import layers as L
from minidl.gradcheck import gradcheck_layer

GRAD_TOL = 1e-6


def rng_for(seed):
    return np.random.default_rng(seed)


class Block(L.Layer):
    """A user-defined layer: children and parameters registered by attribute assignment."""

    def __init__(self, seed=0):
        super().__init__()
        self.fc = L.Linear(3, 3, rng=rng_for(seed))
        self.act = L.Tanh()
        self.scale = L.Parameter(np.ones(3, np.float32))
        self.register_buffer("count", np.zeros((), np.int64))
        self.register_buffer("running", np.zeros(3, np.float32))

    def forward(self, x):
        return self.act(self.fc(x)) * self.scale.data


def make_model(seed=0):
    return L.Sequential(
        L.Linear(4, 3, rng=rng_for(seed)),
        L.Sequential(Block(seed + 1), L.ReLU()),
        L.Linear(3, 2, rng=rng_for(seed + 2)),
    )


# ---------------------------------------------------------------- naming
def test_sequential_names_children_by_index():
    model = L.Sequential(L.Linear(2, 2), L.ReLU(), L.Linear(2, 1))
    assert [name for name, _ in model.named_children()] == ["0", "1", "2"]
    assert isinstance(model[1], L.ReLU) and len(model) == 3
    assert list(model) == model.children()
    model.append(L.Tanh())
    assert model.named_children()[-1][0] == "3"


def test_nested_dotted_parameter_names_in_definition_order():
    model = make_model()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.0.scale", "1.0.fc.weight", "1.0.fc.bias",
                     "2.weight", "2.bias"]
    assert model.parameters() == [p for _, p in model.named_parameters()]
    assert [name for name, _ in model.named_buffers()] == ["1.0.count", "1.0.running"]
    assert model.num_parameters() == 4 * 3 + 3 + 3 + 9 + 3 + 3 * 2 + 2


def test_reassigning_an_attribute_updates_the_registry():
    layer = L.Linear(2, 2)
    layer.bias = None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    block = Block()
    block.running = np.ones(3, np.float32)  # assigning to a buffer keeps it a buffer
    assert block.state_dict()["running"].tolist() == [1.0, 1.0, 1.0]


def test_attribute_assignment_before_super_init_is_explained():
    class Broken(L.Layer):
        def __init__(self):
            self.fc = L.Linear(2, 2)

    with pytest.raises(RuntimeError, match=r"Broken.__init__ must call super\(\).__init__\(\)"):
        Broken()
    with pytest.raises(TypeError, match="must be a Layer"):
        L.Sequential(L.ReLU(), "relu")
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        L.ReLU().missing


def test_repr_shows_the_tree():
    text = repr(make_model())
    assert "(1): Sequential(" in text and "    (0): Block(" in text
    assert "(fc): Linear(in_features=3, out_features=3, bias=True)" in text


def test_deepcopy_gives_independent_parameters():
    model = make_model()
    clone = copy.deepcopy(model)
    clone.parameters()[0].data += 1
    assert not np.array_equal(clone.parameters()[0].data, model.parameters()[0].data)


# ---------------------------------------------------------------- state dicts
def test_state_dict_round_trip():
    source, target = make_model(0), make_model(10)
    x = rng_for(5).standard_normal((2, 4)).astype(np.float32)
    source.register_buffer("steps", np.array(7))
    target.register_buffer("steps", np.array(0))
    state = source.state_dict()
    assert list(state) == [n for n, _ in source.named_parameters()] + [
        "steps", "1.0.count", "1.0.running"]
    assert not np.array_equal(source(x), target(x))
    target.load_state_dict(state)
    np.testing.assert_array_equal(source(x), target(x))
    assert int(target.state_dict()["steps"]) == 7


def test_state_dict_holds_copies():
    model = make_model()
    state = model.state_dict()
    state["0.weight"][...] = 0
    assert np.any(model[0].weight.data != 0)


def test_load_state_dict_copies():
    a, b = L.Linear(2, 2), L.Linear(2, 2)
    state = L.Linear(2, 2).state_dict()
    a.load_state_dict(state)
    b.load_state_dict(state)
    a.weight.data += 1  # e.g. an optimizer step on one model
    assert not np.shares_memory(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, b.weight.data)


def test_load_state_dict_keeps_dtype():
    model = L.Linear(2, 2)
    model.load_state_dict({k: v.astype(np.float64) for k, v in model.state_dict().items()})
    assert model.weight.data.dtype == np.float32


def test_load_state_dict_errors():
    model = make_model()
    state = model.state_dict()
    wrong = dict(state, **{"0.weight": np.zeros((4, 3), np.float32)})
    with pytest.raises(ValueError, match=r"0.weight has shape \(3, 4\) in the model but \(4, 3\)"):
        model.load_state_dict(wrong)
    missing = dict(state)
    del missing["2.bias"]
    with pytest.raises(KeyError, match=r"missing keys \['2.bias'\]"):
        model.load_state_dict(missing)
    with pytest.raises(KeyError, match=r"unexpected keys \['extra'\]"):
        model.load_state_dict(dict(state, extra=np.zeros(1)))
    model.load_state_dict(missing, strict=False)  # partial loads are allowed when asked for


def test_unset_buffers_are_skipped_everywhere():
    # A buffer may be registered as None until first use; it holds no state to save or move.
    model = make_model()
    model[1][0].register_buffer("later", None)
    state = model.state_dict()
    assert "1.0.later" not in state
    make_model(3).load_state_dict(state)  # the same architecture, its buffer also unset
    other = make_model(3)
    other[1][0].register_buffer("later", None)
    other.load_state_dict(state)  # strict: None is neither missing nor unexpected
    np.testing.assert_array_equal(other[0].weight.data, model[0].weight.data)
    assert other[1][0].later is None
    other.astype(np.float64).to("cpu")
    assert other[1][0].later is None


# ---------------------------------------------------------------- gradients and modes
def test_zero_grad_clears_every_parameter():
    model = make_model()
    x = rng_for(0).standard_normal((3, 4)).astype(np.float32)
    model[0](x)
    model[0].backward(np.ones((3, 3), np.float32))
    for p in model.parameters():
        p.grad += 1
    model.zero_grad()
    assert all(not np.any(p.grad) for p in model.parameters())


def test_train_and_eval_propagate():
    model = make_model()
    assert model.eval() is model
    assert all(not layer.training for _, layer in model.named_layers())
    assert model.train() is model
    assert all(layer.training for _, layer in model.named_layers())


def test_sequential_gradcheck():
    model = L.Sequential(L.Linear(4, 5, rng=rng_for(0)), L.Tanh(), L.Linear(5, 3, rng=rng_for(1)))
    errors = gradcheck_layer(model, rng_for(2).standard_normal((3, 4)))
    assert set(errors) == {"x", "0.weight", "0.bias", "2.weight", "2.bias"}
    assert max(errors.values()) < GRAD_TOL, errors


def test_sequential_matches_torch():
    torch = pytest.importorskip("torch")
    model = L.Sequential(L.Linear(4, 5, rng=rng_for(0)), L.Tanh(), L.Linear(5, 3, rng=rng_for(1)))
    model.astype(np.float64)
    ref = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    ref = ref.double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x, dout = rng_for(2).standard_normal((6, 4)), rng_for(3).standard_normal((6, 3))
    y, dx = model(x), model.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = ref(xt)
    yt.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    for (name, p), (ref_name, ref_p) in zip(model.named_parameters(), ref.named_parameters()):
        assert name == ref_name  # PyTorch's dotted names carry over
        np.testing.assert_allclose(p.grad, ref_p.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match=r"Linear\(.*\): backward called before forward"):
        L.Linear(2, 2).backward(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="before forward"):
        L.Residual(L.Tanh()).backward(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match=r"^Sequential\(\): backward called before forward"):
        L.Sequential().backward(np.ones((1, 2)))  # even with no child to notice


# ---------------------------------------------------------------- Residual
def test_residual_identity_forward_backward():
    body = L.Linear(3, 3, rng=rng_for(0))
    block = L.Residual(body)
    x = rng_for(1).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(block(x), x @ body.weight.data.T + body.bias.data + x, rtol=1e-6)
    dout = rng_for(2).standard_normal((2, 3)).astype(np.float32)
    dout_copy = dout.copy()
    np.testing.assert_allclose(block.backward(dout), dout @ body.weight.data + dout, rtol=1e-6)
    np.testing.assert_array_equal(dout, dout_copy)


def test_residual_with_shortcut_forward_backward():
    body, shortcut = L.Linear(3, 2, rng=rng_for(0)), L.Linear(3, 2, bias=False, rng=rng_for(1))
    block = L.Residual(body, shortcut)
    names = [n for n, _ in block.named_parameters()]
    assert names == ["body.weight", "body.bias", "shortcut.weight"]
    x = rng_for(2).standard_normal((4, 3))
    np.testing.assert_allclose(block(x), body(x) + shortcut(x), rtol=1e-6)
    dout = np.ones((4, 2))
    np.testing.assert_allclose(block.backward(dout),
                               dout @ body.weight.data + dout @ shortcut.weight.data, rtol=1e-6)


@pytest.mark.parametrize("with_shortcut", [False, True])
def test_residual_gradcheck(with_shortcut):
    body = L.Sequential(L.Linear(4, 4, rng=rng_for(0)), L.Tanh())
    shortcut = L.Linear(4, 4, rng=rng_for(1)) if with_shortcut else None
    errors = gradcheck_layer(L.Residual(body, shortcut), rng_for(2).standard_normal((3, 4)))
    assert max(errors.values()) < GRAD_TOL, errors


class _Twice(L.Layer):
    """Doubles its input; its backward returns a fresh array in ``grad_dtype`` (read-only
    when ``read_only``)."""

    def __init__(self, grad_dtype=None, read_only=False):
        super().__init__()
        self.grad_dtype, self.read_only = grad_dtype, read_only

    def forward(self, x):
        self._cache = True
        return 2 * x

    def backward(self, dout):
        dx = (2 * dout).astype(self.grad_dtype or dout.dtype)
        dx.flags.writeable = not self.read_only
        return dx


# Residual.backward adds the branches' gradients into the body's in place when that array is
# fresh; each case below is one where it is not, and must give the plain sum, dout untouched.
@pytest.mark.parametrize("body,shortcut,factor", [
    (L.Sequential(), None, 2.0),                      # the body returns dout itself
    (L.Dropout(0.5), None, 2.0),                      # so does Dropout in evaluation mode
    (L.Flatten(), L.Flatten(), 2.0),                  # both branches return views of dout
    (L.Flatten(), L.Sequential(L.Flatten(), _Twice()), 3.0),  # a view of dout + a fresh array
    (_Twice(read_only=True), None, 3.0),              # a fresh but read-only body gradient
], ids=["identity", "dropout-eval", "views", "view-and-fresh", "read-only"])
def test_residual_backward_never_writes_into_dout(body, shortcut, factor):
    block = L.Residual(body, shortcut).eval()
    x = rng_for(0).standard_normal((2, 3, 2, 2)).astype(np.float32)
    out = block(x)
    dout = rng_for(1).standard_normal(out.shape).astype(np.float32)
    dout_copy = dout.copy()
    dx = block.backward(dout)
    np.testing.assert_array_equal(dout, dout_copy)
    np.testing.assert_allclose(dx, factor * dout_copy.reshape(dx.shape), rtol=1e-6)
    assert not np.may_share_memory(dx, dout)


def test_residual_backward_adds_into_a_fresh_body_gradient():
    block = L.Residual(_Twice())
    x = rng_for(0).standard_normal((2, 3)).astype(np.float32)
    block(x)
    dout = rng_for(1).standard_normal((2, 3)).astype(np.float32)
    dout_copy = dout.copy()
    np.testing.assert_array_equal(block.backward(dout), 3 * dout_copy)
    np.testing.assert_array_equal(dout, dout_copy)


def test_residual_backward_keeps_the_wider_dtype():
    # float32 body gradient + float64 skip: an in-place add would round the sum to float32
    block = L.Residual(_Twice(grad_dtype=np.float32))
    x = rng_for(0).standard_normal((2, 3))
    block(x)
    dout = np.full((2, 3), 1 + 2.0 ** -40)  # not representable in float32
    dx = block.backward(dout)
    assert dx.dtype == np.float64
    np.testing.assert_array_equal(dx, np.float32(2 * dout) + dout)


def test_residual_shape_mismatch():
    with pytest.raises(ValueError, match=r"Residual: body output \(2, 5\) and shortcut output "
                                         r"\(2, 3\)"):
        L.Residual(L.Linear(3, 5))(np.ones((2, 3)))


# ---------------------------------------------------------------- devices and dtypes
def test_to_cpu_keeps_numpy_arrays():
    model = make_model()
    assert model.to("cpu") is model
    for p in model.parameters():
        assert type(p.data) is np.ndarray and type(p.grad) is np.ndarray
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        model.to("tpu")


@pytest.mark.skipif(backend.gpu_available(), reason="checks the message shown without a GPU")
def test_to_gpu_without_gpu_is_a_clear_error():
    model = make_model()
    before = model.state_dict()
    with pytest.raises(RuntimeError, match="device 'gpu' requested but"):
        model.to("gpu")
    for key, value in model.state_dict().items():  # nothing half-moved
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="needs cupy and a CUDA device")
def test_to_gpu_and_back():
    model = make_model()
    x = rng_for(0).standard_normal((2, 4)).astype(np.float32)
    expected = model(x)
    model.to("gpu")
    assert all(backend.device_of(p.data) == "gpu" for p in model.parameters())
    assert all(backend.device_of(b) == "gpu" for _, b in model.named_buffers())
    y = model(backend.to_device(x, "gpu"))
    np.testing.assert_allclose(backend.asnumpy(y), expected, rtol=1e-5, atol=1e-6)
    model.to("cpu")
    assert all(type(p.data) is np.ndarray for p in model.parameters())


def test_astype_casts_floating_state_only():
    model = make_model().astype(np.float64)
    for p in model.parameters():
        assert p.data.dtype == np.float64 and p.grad.dtype == np.float64
    buffers = dict(model.named_buffers())
    assert buffers["1.0.running"].dtype == np.float64 and buffers["1.0.count"].dtype == np.int64


def test_check_input_messages():
    layer = L.ReLU()
    with pytest.raises(ValueError, match=r"ReLU\(\): expected input of shape \(N, C, H, W\), "
                                         r"got \(2, 3\)"):
        layer._check_input(np.ones((2, 3)), 4)
    with pytest.raises(ValueError, match=r"expected 3 input channels \(shape\[1\]\), "
                                         r"got input of shape \(2, 4\)"):
        layer._check_input(np.ones((2, 4)), 2, channels=3)
    with pytest.raises(ValueError, match="expected an array, got list"):
        layer._check_input([1], 2)


def test_a_torch_state_dict_with_num_batches_tracked_loads_with_a_note():
    torch = pytest.importorskip("torch")
    tnet = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    tnet.train()
    tnet(torch.randn(5, 4))                     # running statistics move, the counter counts
    state = tnet.state_dict()
    assert "1.num_batches_tracked" in state
    net = L.Sequential(L.Linear(4, 3), L.BatchNorm1d(3))
    with pytest.warns(UserWarning, match=r"ignored 1 PyTorch-only entries \(1.num_batches_tracked"):
        net.load_state_dict(state)
    for key, value in net.state_dict().items():
        np.testing.assert_allclose(value, state[key].numpy(), rtol=1e-6, err_msg=key)
    with pytest.raises(KeyError, match="unexpected keys.*'1.other'"):  # others still refused
        net.load_state_dict({**net.state_dict(), "1.other": np.zeros(1)})
