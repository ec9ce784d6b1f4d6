"""Stateless math: ``op_forward(...) -> (out, cache)`` and ``op_backward(dout, cache) -> grads``."""
