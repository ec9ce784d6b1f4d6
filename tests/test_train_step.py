"""train_step and evaluate: the learning step and the evaluation pass a student reads first."""
import math

import numpy as np

from minidl import layers as L, losses, optim
from minidl.metrics import RunningTotals
from minidl.train import evaluate, train_step


def _net(seed=0):
    rng = np.random.default_rng(seed)
    return L.Sequential(L.Linear(6, 8, rng=rng), L.BatchNorm1d(8), L.ReLU(),
                        L.Linear(8, 3, rng=rng))


def _batch(n=10, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


def test_train_step_is_forward_backward_update():
    x, y = _batch()
    net, ref = _net(), _net()
    crit, ref_crit = losses.CrossEntropyLoss(), losses.CrossEntropyLoss()
    opt, ref_opt = optim.SGD(net.parameters(), lr=0.1), optim.SGD(ref.parameters(), lr=0.1)
    for p in net.parameters():   # stale gradients must not leak into the step
        p.grad[...] = 5.0
    loss, correct = train_step(net, crit, opt, x, y)

    logits = ref(x)
    ref_loss = ref_crit(logits, y)
    ref.backward(ref_crit.backward())
    ref_opt.step()
    assert float(loss) == float(ref_loss)
    assert int(correct) == int((logits.argmax(1) == y).sum())
    for (name, p), q in zip(net.named_parameters(), ref.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)


def test_evaluate_matches_one_big_batch_and_restores_the_mode():
    x, y = _batch(23)
    net, crit = _net(), losses.CrossEntropyLoss()
    net.train()
    loss, acc = evaluate(net, crit, x, y, batch_size=5)   # 5 batches, the last of 3
    assert net.training
    net.eval()
    logits = net(x)
    assert math.isclose(loss, float(crit(logits, y)), rel_tol=1e-6)
    assert acc == float((logits.argmax(1) == y).mean())
    assert all(math.isnan(v) for v in evaluate(net, crit, x[:0], y[:0]))


def test_running_totals_weight_batches_by_size_and_resume_from_host_values():
    totals = RunningTotals()
    assert all(math.isnan(v) for v in totals.read())
    totals.add(np.float32(2.0), np.int64(3), 4)
    totals.add(np.float32(1.0), np.int64(1), 2)
    assert totals.read() == (10 / 6, 4 / 6)
    again = RunningTotals("cpu", *totals.sums())
    assert again.read() == totals.read() and again.sums() == (10.0, 4, 6)


def test_train_step_with_a_teacher_learns_from_its_soft_targets():
    x, y = _batch()
    net, ref = _net(), _net()
    teacher = _net(seed=7).eval()     # eval mode: BatchNorm uses its running statistics
    crit = losses.DistillationLoss(4.0, hard_weight=0.1, soft_weight=0.9)
    ref_crit = losses.DistillationLoss(4.0, hard_weight=0.1, soft_weight=0.9)
    opt, ref_opt = optim.SGD(net.parameters(), lr=0.1), optim.SGD(ref.parameters(), lr=0.1)
    teacher_before = {k: v.copy() for k, v in teacher.state_dict().items()}
    loss, _ = train_step(net, crit, opt, x, y, teacher)

    ref_loss = ref_crit(ref(x), y, teacher(x))
    ref.backward(ref_crit.backward())
    ref_opt.step()
    assert float(loss) == float(ref_loss)
    assert float(ref_crit.soft_loss) > 0 and float(loss) != float(ref_crit.hard_loss)
    for (name, p), q in zip(net.named_parameters(), ref.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    for key, value in teacher.state_dict().items():  # the teacher never learns
        np.testing.assert_array_equal(value, teacher_before[key], err_msg=key)
    assert not teacher.training
