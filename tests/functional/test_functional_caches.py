"""Every functional forward owned here: refuses non-float input naming the op, and returns a
typed cache (a NamedTuple whose docstring says what each field holds)."""
import re

import numpy as np
import pytest

from minidl import losses
from minidl.functional import activations as A
from minidl.functional import linear as Lin
from minidl.functional import normalization as Nrm
from minidl.functional import pooling as P

C = 3
# (name the error must carry, forward taking x, the cache class)
FORWARDS = [
    ("relu_forward", A.relu_forward, A.ActivationCache),
    ("leaky_relu_forward", A.leaky_relu_forward, A.ActivationCache),
    ("elu_forward", A.elu_forward, A.ActivationCache),
    ("sigmoid_forward", A.sigmoid_forward, A.ActivationCache),
    ("tanh_forward", A.tanh_forward, A.ActivationCache),
    ("swish_forward", A.swish_forward, A.ActivationCache),
    ("crelu_forward", A.crelu_forward, A.ActivationCache),
    ("batchnorm_forward", lambda x: Nrm.batchnorm_forward(x, np.ones(C), np.zeros(C)),
     Nrm.BatchNormCache),
    ("maxpool2d_forward", lambda x: P.maxpool2d_forward(x, 2), P.PoolCache),
    ("avgpool2d_forward", lambda x: P.avgpool2d_forward(x, 2), P.PoolCache),
    ("global_avgpool2d_forward", P.global_avgpool2d_forward, P.GlobalPoolCache),
    ("linear_forward", lambda x: Lin.linear_forward(x.reshape(2, -1), np.ones((4, 48))),
     Lin.LinearCache),
]
IDS = [f[0] for f in FORWARDS]


@pytest.mark.parametrize("name,forward,cache_type", FORWARDS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_])
def test_non_float_input_is_refused(name, forward, cache_type, dtype):
    x = np.ones((2, C, 4, 4), dtype=dtype)
    with pytest.raises(TypeError, match=rf"{name}: input must be a floating-point array"):
        forward(x)


@pytest.mark.parametrize("name,forward,cache_type", FORWARDS, ids=IDS)
def test_cache_is_typed_and_documented(name, forward, cache_type):
    x = np.random.default_rng(0).standard_normal((2, C, 4, 4)).astype(np.float32)
    out, cache = forward(x)
    assert type(cache) is cache_type and out.dtype == np.float32
    doc = cache_type.__doc__
    for field in cache_type._fields:  # each field is described in the docstring
        assert re.search(rf"\b{field}\b", doc), (cache_type.__name__, field)


def test_loss_cache_is_typed_and_documented():
    _, cache = losses.softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0, 2]))
    assert type(cache) is losses.CrossEntropyCache
    for field in cache._fields:
        assert re.search(rf"\b{field}\b", losses.CrossEntropyCache.__doc__), field
