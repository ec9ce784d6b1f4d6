"""CrossEntropyLoss and DistillationLoss: numerical gradients, PyTorch agreement, stability,
dtypes and errors."""
import math
import re

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


# ---------------------------------------------------------------- DistillationLoss
def distill_batch(N=6, C=5, scale=1.0, seed=0, dtype=np.float64):
    """Student logits, hard targets and (more confident) teacher logits."""
    student, targets = batch(N, C, scale, seed, dtype)
    teacher = np.random.default_rng(seed + 100).standard_normal((N, C)) * 3 * scale
    return student, targets, teacher.astype(dtype)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 20.0])
@pytest.mark.parametrize("hard_weight", [0.0, 0.1, 1.0])
def test_distillation_gradient_matches_finite_differences(temperature, hard_weight):
    student, targets, teacher = distill_batch()
    crit = losses.DistillationLoss(temperature, hard_weight)
    crit(student, targets, teacher)
    analytic = crit.backward()
    numeric = numerical_gradient(lambda: crit(student, targets, teacher), student)
    assert rel_error(analytic, numeric) < GRAD_TOL


def _torch_distillation(torch, student, targets, teacher, T, w):
    """(soft cross-entropy form, KL form) of the loss, and the student's logits tensor."""
    F = torch.nn.functional
    s = torch.from_numpy(student.copy()).requires_grad_(True)
    t = torch.from_numpy(teacher)
    log_q = F.log_softmax(s / T, dim=1)
    p = F.softmax(t / T, dim=1)
    hard = F.cross_entropy(s, torch.from_numpy(targets))
    soft_ce = -(p * log_q).sum(1).mean() * T**2 + w * hard
    kl = F.kl_div(log_q, p, reduction="batchmean") * T**2 + w * hard
    return soft_ce, kl, s


@pytest.mark.parametrize("scale", [1.0, 1e3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature, hard_weight", [(1.0, 1.0), (4.0, 0.1), (20.0, 0.0)])
def test_distillation_matches_torch(temperature, hard_weight, dtype, scale):
    torch = pytest.importorskip("torch")
    student, targets, teacher = distill_batch(N=8, C=10, scale=scale, seed=2, dtype=dtype)
    crit = losses.DistillationLoss(temperature, hard_weight)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = crit(student, targets, teacher)
        dlogits = crit.backward()
    soft_ce, kl, s = _torch_distillation(torch, student, targets, teacher, temperature,
                                         hard_weight)
    kl.backward()  # the KL form: the same gradient, as the teacher's entropy is a constant
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss.dtype == dtype and dlogits.dtype == dtype
    assert abs(float(loss) - soft_ce.item()) <= tol * max(1.0, abs(soft_ce.item()))
    assert rel_error(dlogits, s.grad.numpy()) < tol
    # loss - KL form = T^2 * mean entropy of the soft targets: >= 0.
    assert float(loss) >= kl.item() - tol * max(1.0, abs(kl.item()))


def test_distillation_terms_and_probs():
    student, targets, teacher = distill_batch()
    crit = losses.DistillationLoss(3.0, hard_weight=0.25)
    loss = crit(student, targets, teacher)
    hard = losses.CrossEntropyLoss()(student, targets)
    np.testing.assert_allclose(crit.hard_loss, hard, rtol=1e-12)
    np.testing.assert_allclose(loss, crit.soft_loss + 0.25 * hard, rtol=1e-12)
    soft_ce, _ = losses.soft_target_forward(student, teacher, 3.0)
    np.testing.assert_allclose(crit.soft_loss, soft_ce, rtol=1e-12)
    np.testing.assert_allclose(crit.probs, np.exp(losses.log_softmax(student)), rtol=1e-12)
    assert repr(crit) == "DistillationLoss(temperature=3.0, hard_weight=0.25, soft_weight=1.0)"


@pytest.mark.parametrize("soft_weight", [0.0, 0.5, 0.9])
def test_distillation_soft_weight_gradient_matches_finite_differences(soft_weight):
    student, targets, teacher = distill_batch(seed=3)
    crit = losses.DistillationLoss(4.0, hard_weight=1 - soft_weight, soft_weight=soft_weight)
    loss = crit(student, targets, teacher)
    np.testing.assert_allclose(loss, soft_weight * crit.soft_loss +
                               (1 - soft_weight) * crit.hard_loss, rtol=1e-12)
    analytic = crit.backward()
    numeric = numerical_gradient(lambda: crit(student, targets, teacher), student)
    assert rel_error(analytic, numeric) < GRAD_TOL


def test_distillation_with_soft_weight_zero_is_exactly_cross_entropy():
    for dtype in (np.float32, np.float64):
        student, targets, teacher = distill_batch(N=16, C=10, seed=4, dtype=dtype)
        crit = losses.DistillationLoss(20.0, hard_weight=1.0, soft_weight=0.0)
        ce = losses.CrossEntropyLoss()
        assert crit(student, targets, teacher) == ce(student, targets)  # bit for bit
        np.testing.assert_array_equal(crit.backward(), ce.backward())


def test_distillation_special_cases():
    student, targets, teacher = distill_batch()
    # A teacher equal to the student: the soft term has zero gradient, only the hard one acts.
    crit = losses.DistillationLoss(5.0, hard_weight=0.5)
    crit(student, targets, student.copy())
    ce = losses.CrossEntropyLoss()
    ce(student, targets)
    np.testing.assert_allclose(crit.backward(), 0.5 * ce.backward(), rtol=1e-12, atol=1e-15)
    # A teacher certain of the true class at T = 1: the soft targets ARE the hard targets.
    one_hot = np.eye(student.shape[1])[targets] * 1e4
    crit = losses.DistillationLoss(1.0, hard_weight=1.0)
    np.testing.assert_allclose(crit(student, targets, one_hot), 2 * ce(student, targets),
                               rtol=1e-12)
    np.testing.assert_allclose(crit.backward(), 2 * ce.backward(), rtol=1e-12)


def test_t_squared_keeps_the_soft_gradient_scale():
    """Hinton et al., section 2: without T^2 the soft gradient falls like 1/T^2; with it, it
    tends to (z - v) / (N C) for zero-mean logits z (student) and v (teacher) as T grows
    (distillation becomes logit matching), independent of T."""
    student, targets, teacher = distill_batch(N=4, C=6)
    student -= student.mean(1, keepdims=True)
    teacher -= teacher.mean(1, keepdims=True)
    limit = (student - teacher) / student.size

    def soft_grad(T):
        crit = losses.DistillationLoss(T, hard_weight=0.0)
        crit(student, targets, teacher)
        return crit.backward()

    norms = {T: np.linalg.norm(soft_grad(T)) for T in (10.0, 100.0, 1000.0)}
    assert 0.8 < norms[10.0] / norms[1000.0] < 1.25           # T^2 keeps the scale ...
    assert rel_error(soft_grad(1000.0), limit) < 1e-2          # ... at the logit-matching limit
    assert rel_error(soft_grad(100.0), limit) < 1e-1


def test_distillation_dloss_scales_the_gradient():
    student, targets, teacher = distill_batch()
    crit = losses.DistillationLoss(2.0, 0.3)
    crit(student, targets, teacher)
    np.testing.assert_allclose(crit.backward(0.25), 0.25 * crit.backward(), rtol=1e-12)


@pytest.mark.parametrize("teacher_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distillation_dtype_and_device(xp, dtype, teacher_dtype):
    student, targets, teacher = distill_batch(dtype=dtype)
    crit = losses.DistillationLoss(4.0, 0.1)
    # The teacher's logits (here on the host, in any float dtype) follow the student's.
    loss = crit(xp.asarray(student), targets, teacher.astype(teacher_dtype))
    dlogits = crit.backward()
    assert loss.dtype == dtype and dlogits.dtype == dtype and crit.probs.dtype == dtype
    assert backend.get_array_module(dlogits) is xp
    reference = losses.DistillationLoss(4.0, 0.1)(student.astype(np.float64), targets,
                                                  teacher.astype(np.float64))
    assert abs(float(loss) - float(reference)) < 1e-5 * abs(float(reference))


def test_distillation_backward_before_forward():
    with pytest.raises(RuntimeError, match=r"DistillationLoss\(.*before forward"):
        losses.DistillationLoss(2.0).backward()


@pytest.mark.parametrize("make, message", [
    (lambda: losses.DistillationLoss(0.0), r"temperature must be > 0, got 0.0"),
    (lambda: losses.DistillationLoss(-2), r"temperature must be > 0, got -2"),
    (lambda: losses.DistillationLoss(float("nan")), r"temperature must be a finite real"),
    (lambda: losses.DistillationLoss(True), r"temperature must be a finite real"),
    (lambda: losses.DistillationLoss("4"), r"temperature must be a finite real"),
    (lambda: losses.DistillationLoss(4.0, hard_weight=-0.1), r"hard_weight must be >= 0"),
    (lambda: losses.DistillationLoss(4.0, soft_weight=-0.5), r"soft_weight must be >= 0"),
])
def test_distillation_bad_hyper_parameters(make, message):
    with pytest.raises(ValueError, match="DistillationLoss: " + message):
        make()


@pytest.mark.parametrize("student, targets, teacher, message", [
    (np.zeros((3, 4)), np.array([0, 1, 2]), np.zeros((3, 5)),
     r"teacher_logits must have the student's shape \(3, 4\), got \(3, 5\)"),
    (np.zeros((3, 4)), np.array([0, 1, 2]), np.zeros((4, 4)),
     r"teacher_logits must have the student's shape \(3, 4\), got \(4, 4\)"),
    (np.zeros((3, 4)), np.array([0, 1, 2]), np.zeros((3, 4), int),
     r"teacher_logits must be floating point, got dtype int64"),
    (np.zeros((3, 4)), np.array([0, 1, 2]), [[0.0] * 4] * 3,
     r"teacher_logits must be an array of shape \(3, 4\), got list"),
    (np.zeros((3, 4)), np.array([0, 1]), np.zeros((3, 4)),
     r"targets must have shape \(3,\) for logits of shape \(3, 4\), got \(2,\)"),
    (np.zeros((3, 4)), np.array([0, 1, 4]), np.zeros((3, 4)), r"in \[0, 4\).*\[0, 4\]"),
    (np.zeros(4), np.array([0]), np.zeros(4), r"expected logits of shape \(N, C\), got \(4,\)"),
    (np.zeros((2, 3), int), np.array([0, 1]), np.zeros((2, 3)), r"logits must be floating"),
])
def test_distillation_bad_inputs(student, targets, teacher, message):
    with pytest.raises(ValueError, match="DistillationLoss: .*" + message):
        losses.DistillationLoss(2.0)(student, targets, teacher)


def test_soft_target_cache_is_typed_and_documented():
    _, cache = losses.soft_target_forward(np.zeros((2, 3)), np.ones((2, 3)), 2.0)
    assert type(cache) is losses.SoftTargetCache
    for field in cache._fields:
        assert re.search(rf"\b{field}\b", losses.SoftTargetCache.__doc__), field
