"""CrossEntropyLoss: numerical gradient, PyTorch agreement, stability, dtypes and errors."""
import math

import numpy as np
import pytest

from minidl import backend, losses
from minidl.gradcheck import numerical_gradient, rel_error

GRAD_TOL = 1e-6  # float64 centred differences of a smooth scalar


def batch(N=6, C=5, scale=1.0, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, C)) * scale).astype(dtype), rng.integers(0, C, N)


def test_gradient_matches_finite_differences():
    logits, targets = batch()
    crit = losses.CrossEntropyLoss()
    crit(logits, targets)
    analytic = crit.backward()
    numeric = numerical_gradient(lambda: crit(logits, targets), logits)
    assert rel_error(analytic, numeric) < GRAD_TOL


def test_dloss_scales_the_gradient():
    logits, targets = batch()
    crit = losses.CrossEntropyLoss()
    crit(logits, targets)
    np.testing.assert_allclose(crit.backward(0.25), 0.25 * crit.backward(), rtol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(scale, dtype):
    torch = pytest.importorskip("torch")
    logits, targets = batch(N=8, C=10, scale=scale, seed=1, dtype=dtype)
    crit = losses.CrossEntropyLoss()
    loss = crit(logits, targets)
    dlogits = crit.backward()

    lt = torch.from_numpy(logits.copy()).requires_grad_(True)
    ref = torch.nn.functional.cross_entropy(lt, torch.from_numpy(targets))
    ref.backward()

    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert abs(float(loss) - ref.item()) <= tol * max(1.0, abs(ref.item()))
    assert rel_error(dlogits, lt.grad.numpy()) < tol
    np.testing.assert_allclose(crit.probs, torch.softmax(lt, 1).detach().numpy(),
                               rtol=tol, atol=tol)


def test_huge_logits_give_finite_exact_values():
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4]], np.float32)
    crit = losses.CrossEntropyLoss()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = crit(logits, np.array([1, 2]))
        dlogits = crit.backward()
    # Row 0: -log softmax = 1e4 (the winner beats target 1 by 1e4). Row 1: a tie -> log 2.
    np.testing.assert_allclose(float(loss), (1e4 + math.log(2)) / 2, rtol=1e-6)
    np.testing.assert_allclose(dlogits, [[0.5, -0.5, 0.0], [0.0, 0.25, -0.25]], atol=1e-7)


def test_known_values_and_probs():
    crit = losses.CrossEntropyLoss()
    assert crit.probs is None
    logits = np.zeros((4, 7))
    np.testing.assert_allclose(crit(logits, np.array([0, 1, 2, 6])), math.log(7), rtol=1e-12)
    logits, targets = batch(N=50, C=4)
    crit(logits, targets)
    assert crit.probs.shape == (50, 4)
    np.testing.assert_allclose(crit.probs.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(crit.probs.argmax(1), logits.argmax(1))  # usable for accuracy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_device(xp, dtype):
    logits, targets = batch(dtype=dtype)
    logits = xp.asarray(logits)
    crit = losses.CrossEntropyLoss()
    loss = crit(logits, targets)  # numpy targets are moved to the logits' device
    dlogits = crit.backward()
    assert loss.dtype == dtype and dlogits.dtype == dtype and crit.probs.dtype == dtype
    assert type(dlogits) is type(logits)
    reference = losses.CrossEntropyLoss()
    assert abs(float(loss) - float(reference(backend.asnumpy(logits), targets))) < 1e-6


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        losses.CrossEntropyLoss().backward()


@pytest.mark.parametrize("logits, targets, message", [
    (np.zeros((3, 4)), np.array([0, 1]),
     r"targets must have shape \(3,\) for logits of shape \(3, 4\), got \(2,\)"),
    (np.zeros((3, 4)), np.zeros((3, 1), int), r"shape \(3,\).*got \(3, 1\)"),
    (np.zeros((3, 4)), np.array([0, 1, 4]), r"in \[0, 4\).*got values in \[0, 4\]"),
    (np.zeros((3, 4)), np.array([0, -1, 2]), r"in \[0, 4\).*got values in \[-1, 2\]"),
    (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]),
     r"integer class indices of shape \(3,\), got dtype float64"),
    (np.zeros((3, 4)), np.array([True, False, True]), r"integer class indices.*got dtype bool"),
    (np.zeros(4), np.array([0]), r"expected logits of shape \(N, C\), got \(4,\)"),
    (np.zeros((2, 3), int), np.array([0, 1]), r"logits must be floating point"),
    (np.zeros((0, 3)), np.zeros(0, int), r"no examples"),
])
def test_bad_inputs(logits, targets, message):
    with pytest.raises(ValueError, match="CrossEntropyLoss: .*" + message):
        losses.CrossEntropyLoss()(logits, targets)


def test_list_targets_are_judged_like_arrays():
    crit = losses.CrossEntropyLoss()
    np.testing.assert_allclose(crit(np.zeros((2, 3)), [0, 2]), math.log(3), rtol=1e-12)
    with pytest.raises(ValueError, match=r"in \[0, 3\).*got values in \[0, 5\]"):
        crit(np.zeros((2, 3)), [0, 5])


@pytest.mark.parametrize("bad", [-1, 4])
def test_out_of_range_targets_never_give_a_finite_loss_without_a_device_read(bad):
    # The functional op folds the range check into its values (no device->host read): a bad
    # target makes the loss and the whole gradient NaN, and never indexes out of bounds.
    logits, targets = batch(N=3, C=4)
    targets[1] = bad
    loss, cache = losses.softmax_cross_entropy_forward(logits, targets)
    dlogits = losses.softmax_cross_entropy_backward(1.0, cache)
    assert np.isnan(loss) and np.isnan(dlogits).all()
    assert not bool(cache.targets_ok)
    good = targets.copy()
    good[1] = 0
    loss, cache = losses.softmax_cross_entropy_forward(logits, good)
    assert np.isfinite(loss) and bool(cache.targets_ok)


def test_device_targets_are_checked_on_request(xp, monkeypatch):
    # Host targets are refused at once (above). Targets already on the GPU are not read back
    # per step: the loss turns NaN and check_targets() names the cause. Without a GPU the
    # device path is reached by letting the loss treat numpy targets as device ones.
    logits, targets = batch(N=3, C=4)
    logits, targets = xp.asarray(logits), xp.asarray(targets)
    if xp is np:
        monkeypatch.setattr(backend, "device_of", lambda a: "gpu")
        monkeypatch.setattr(backend, "to_device", lambda a, device: a)
    crit = losses.CrossEntropyLoss()
    with pytest.raises(RuntimeError, match="before forward"):
        crit.check_targets()
    assert math.isfinite(float(crit(logits, targets)))
    crit.check_targets()  # in range: nothing to say
    targets[2] = 7
    assert math.isnan(float(crit(logits, targets)))
    assert bool(xp.isnan(crit.backward()).all())
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: targets must lie in \[0, 4\).*"
                                         r"got values in \[\d, 7\]"):
        crit.check_targets()
