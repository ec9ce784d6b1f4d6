"""Structure Composing Layers (Chen, 2019, "Structure Composing Layer: a new type of layer to
deep and speed up convolutional neural networks").

The paper replaces the 3x3 cross-correlation of a convolution by a max-pool: each output
channel is a learned linear combination of max-pooled input channels (its Eq. 6),
``out_j = sum_k a_jk * maxpool(input_k) + bias_j``, i.e. a stride-1 max-pool followed by a
1x1 convolution, with 1/9 of a 3x3 convolution's weights. MixedSCLayer keeps a few ordinary
convolution channels ("smear features", of the same kernel size as the pool) and concatenates
them in front of the SC channels, as in the paper's PyTorch listing
(``torch.cat([avg_conv(x), sc_conv(maxpool(x))], 1)``).
"""
from __future__ import annotations

from .. import backend
from .base import Layer
from .conv import Conv2d
from .pooling import MaxPool2d


def _check_pool_size(who: str, pool_size) -> None:
    # Padding pool_size // 2 preserves H and W only for an odd window.
    if not isinstance(pool_size, int) or pool_size < 1 or pool_size % 2 == 0:
        raise ValueError(f"{who}: pool_size must be a positive odd int so that H and W are "
                         f"preserved, got {pool_size!r}")


class SCLayer(Layer):
    """k x k max-pool (stride 1, padding k // 2) then a 1x1 convolution with bias.

    x: (N, in_channels, H, W) -> (N, out_channels, H, W). Children: ``pool``, ``conv``.
    The paper's extra scalar ``maxpool_bias`` is omitted: its author notes it is needless,
    since a constant added before the 1x1 convolution is absorbed by the convolution's bias.
    """

    def __init__(self, in_channels: int, out_channels: int, pool_size: int = 3,
                 method: str = "auto", rng=None):
        super().__init__()
        _check_pool_size(type(self).__name__, pool_size)
        self.in_channels, self.out_channels, self.pool_size = in_channels, out_channels, pool_size
        self.pool = MaxPool2d(pool_size, stride=1, padding=pool_size // 2)
        self.conv = Conv2d(in_channels, out_channels, 1, method=method, rng=rng)

    def forward(self, x):
        self._check_input(x, 4, self.in_channels)
        out = self.conv(self.pool(x))
        self._cache = out.shape  # the children hold the arrays; this is for checking dout
        return out

    def backward(self, dout):
        self._check_dout(dout, self._saved())
        return self.pool.backward(self.conv.backward(dout))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, pool_size={self.pool_size}"


class MixedSCLayer(Layer):
    """Concatenate a k x k convolution and an SCLayer (k x k max-pool) along channels.

    x: (N, in_channels, H, W) -> (N, out_channels, H, W): channels ``[:conv_channels]`` come
    from ``conv`` (the paper's 16 "smear feature" channels) and the remaining
    ``out_channels - conv_channels`` from ``sc``. Both branches read the same x, so their
    input gradients add.

    One kernel size for both branches, as in the paper's listing, where ``MixedSCLayer(input_ch,
    output_ch, kernel_size, ...)`` passes its ``kernel_size`` to both ``avg_conv`` and the max
    pool: by default (``conv_kernel_size=None``) the conv branch is ``pool_size`` x
    ``pool_size`` (padding ``pool_size // 2``). What changed: minidl's first MixedSCLayer fixed
    the conv branch at 3x3 whatever ``pool_size``; ``conv_kernel_size=3`` keeps that variant.
    At the paper's (and SfNet's) ``pool_size=3`` the two are the same layer.
    """

    def __init__(self, in_channels: int, out_channels: int, pool_size: int = 3,
                 conv_channels: int = 16, conv_kernel_size: int | None = None,
                 method: str = "auto", rng=None):
        super().__init__()
        name = type(self).__name__
        _check_pool_size(name, pool_size)
        if not isinstance(conv_channels, int) or not 0 < conv_channels < out_channels:
            raise ValueError(f"{name}: need 0 < conv_channels < out_channels so both branches "
                             f"have channels, got conv_channels={conv_channels!r}, "
                             f"out_channels={out_channels!r}")
        if conv_kernel_size is None:
            conv_kernel_size = pool_size  # the paper: one kernel_size for both branches
        elif (not isinstance(conv_kernel_size, int) or isinstance(conv_kernel_size, bool)
              or conv_kernel_size < 1 or conv_kernel_size % 2 == 0):
            raise ValueError(f"{name}: conv_kernel_size must be None (= pool_size) or a "
                             f"positive odd int so that H and W are preserved, "
                             f"got {conv_kernel_size!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.pool_size, self.conv_channels = pool_size, conv_channels
        self.conv_kernel_size = conv_kernel_size
        self.conv = Conv2d(in_channels, conv_channels, conv_kernel_size,
                           padding=conv_kernel_size // 2, method=method, rng=rng)
        self.sc = SCLayer(in_channels, out_channels - conv_channels, pool_size, method=method,
                          rng=rng)

    def forward(self, x):
        self._check_input(x, 4, self.in_channels)
        xp = backend.get_array_module(x)
        out = xp.concatenate([self.conv(x), self.sc(x)], axis=1)
        self._cache = out.shape
        return out

    def backward(self, dout):
        self._check_dout(dout, self._saved())
        c = self.conv_channels
        return self.conv.backward(dout[:, :c]) + self.sc.backward(dout[:, c:])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, pool_size={self.pool_size}, "
                f"conv_channels={self.conv_channels}, conv_kernel_size={self.conv_kernel_size}")
