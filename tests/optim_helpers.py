"""Helpers shared by the optimiser tests (not a test module: pytest collects test_*.py only)."""
from minidl import backend


def run(opt, params, grads, steps):
    """Set each parameter's grad to the given arrays and step; returns weights after each step."""
    xp = backend.get_array_module(params[0].data)
    history = []
    for t in steps:
        for p, g in zip(params, grads):
            p.grad[...] = xp.asarray(g[t])
        opt.step()
        history.append([backend.asnumpy(p.data).copy() for p in params])
    return history
