"""Landscape measurements on problems with known answers: a quadratic's beta is its largest
eigenvalue, its gradient change along a step is s * ||A g||; a model's probes leave it as found."""
import numpy as np
import pytest

from minidl import layers as L, losses, optim
from minidl.analysis import (ModelObjective, effective_beta, gradient_predictiveness,
                             landscape_step, loss_band, probe_along_gradient)
from minidl.gradcheck import rel_error

EIGENVALUES = np.array([4.0, 1.5, 0.25])


def quadratic(eigenvalues=EIGENVALUES, seed=0):
    """f(x) = 1/2 x^T A x with A = Q diag(eigenvalues) Q^T (Q a random rotation): (f, A, Q)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigenvalues),) * 2))
    a = q @ np.diag(eigenvalues) @ q.T

    def f(x):
        return 0.5 * x @ a @ x, a @ x
    return f, a, q


def test_beta_of_a_quadratic_is_its_top_eigenvalue_along_the_top_eigenvector():
    f, _, q = quadratic()
    probe = probe_along_gradient(f, 3.0 * q[:, 0], [1e-3, 0.1, 0.5])
    assert probe["beta"] == pytest.approx(EIGENVALUES.max(), rel=1e-12)


def test_beta_lies_between_the_extreme_eigenvalues_anywhere():
    f, _, _ = quadratic()
    for seed in range(5):
        x = np.random.default_rng(seed).standard_normal(3)
        beta = probe_along_gradient(f, x, [0.01, 0.2])["beta"]
        assert EIGENVALUES.min() - 1e-12 <= beta <= EIGENVALUES.max() + 1e-12


def test_probe_losses_and_gradient_changes_follow_the_closed_form():
    f, a, _ = quadratic()
    x = np.array([0.3, -1.2, 2.0])
    sizes = np.array([0.05, 0.1, 0.4])
    probe = probe_along_gradient(f, x, sizes)
    g = a @ x
    expected_losses = [0.5 * (x - s * g) @ a @ (x - s * g) for s in sizes]
    np.testing.assert_allclose(probe["probe_losses"], expected_losses, rtol=1e-12)
    # grad(x - s g) = g - s A g, so the change is s ||A g||
    np.testing.assert_allclose(probe["grad_changes"], sizes * np.linalg.norm(a @ g), rtol=1e-12)
    assert probe["loss"] == pytest.approx(0.5 * x @ a @ x)
    assert probe["grad_norm"] == pytest.approx(np.linalg.norm(g))


def test_zero_gradient_has_no_beta_and_bad_step_sizes_are_refused():
    f, _, _ = quadratic()
    assert np.isnan(probe_along_gradient(f, np.zeros(3), [0.1])["beta"])
    for bad in ([], [0.1, 0.0], [-1.0]):
        with pytest.raises(ValueError, match="step_sizes"):
            probe_along_gradient(f, np.ones(3), bad)


def test_gradient_predictiveness_and_effective_beta_direct():
    g = np.array([3.0, 4.0])
    assert gradient_predictiveness(g, [[3.0, 4.0], [0.0, 0.0]]).tolist() == [0.0, 5.0]
    assert effective_beta([1.0, 6.0], [2.0, 3.0]) == 2.0
    with pytest.raises(ValueError, match="distance"):
        effective_beta([1.0], [0.0])
    with pytest.raises(ValueError, match="match"):
        gradient_predictiveness(g, [[1.0, 2.0, 3.0]])


def test_loss_band_is_the_per_step_min_and_max():
    lo, hi = loss_band([[3.0, 2.0, 1.0, 9.0], [1.0, 5.0, np.nan], [2.0, 2.5, 0.5]])
    np.testing.assert_array_equal(lo, [1.0, 2.0, 0.5])  # cut to the shortest run
    np.testing.assert_array_equal(hi, [3.0, 5.0, 1.0])  # NaN (a diverged run) ignored
    lo, hi = loss_band([[np.nan], [np.nan]])
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    with pytest.raises(ValueError):
        loss_band([])


def _net(rng):
    return L.Sequential(L.Linear(5, 4, rng=rng), L.BatchNorm1d(4), L.Tanh(), L.Linear(4, 3, rng=rng))


def test_model_objective_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    net = _net(rng)
    for p in net.parameters():
        p.data = p.data.astype(np.float64)
        p.grad = np.zeros_like(p.data)
    x, y = rng.standard_normal((6, 5)), np.array([0, 1, 2, 0, 1, 2])
    objective = ModelObjective(net, losses.CrossEntropyLoss(), x, y)
    w = objective.flat()
    _, grad = objective(w)
    h = 1e-6
    numeric = np.array([(objective(w + h * e)[0] - objective(w - h * e)[0]) / (2 * h)
                        for e in np.eye(len(w))])
    assert rel_error(grad, numeric) < 1e-6


def test_landscape_step_takes_the_same_step_as_plain_training():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=8)
    probed, plain = _net(np.random.default_rng(2)), _net(np.random.default_rng(2))
    opt_probed = optim.SGD(probed.parameters(), lr=0.1, momentum=0.9)
    opt_plain = optim.SGD(plain.parameters(), lr=0.1, momentum=0.9)
    crit = losses.CrossEntropyLoss()
    for _ in range(3):
        row = landscape_step(probed, crit, opt_probed, x, y, [0.5, 2.0])
        loss = crit(plain(x), y)
        plain.zero_grad()
        plain.backward(crit.backward())
        opt_plain.step()
        assert row["loss"] == pytest.approx(float(loss), rel=1e-6)
        assert row["probe_loss_min"] <= row["probe_loss_max"]
        assert 0 <= row["grad_change_min"] <= row["grad_change_max"] and row["beta"] > 0
    for (name, a), b in zip(probed.state_dict().items(), plain.state_dict().values()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=name)  # incl. running stats


def test_restore_puts_back_parameters_buffers_and_gradients():
    rng = np.random.default_rng(3)
    net = _net(rng)
    x, y = rng.standard_normal((6, 5)).astype(np.float32), np.array([0, 1, 2, 0, 1, 2])
    objective = ModelObjective(net, losses.CrossEntropyLoss(), x, y)
    with pytest.raises(RuntimeError, match="save_state"):
        objective.restore()
    objective.evaluate()
    objective.save_state()
    before = {k: v.copy() for k, v in net.state_dict().items()}
    grads = [p.grad.copy() for p in net.parameters()]
    objective(objective.flat() + 1.0)  # moves parameters, running stats and gradients
    objective.restore()
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    for p, g in zip(net.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
