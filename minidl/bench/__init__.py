"""``python -m minidl.bench``: minidl timed against PyTorch's CPU build in the same run.

Every figure is a ratio measured side by side: each repeat runs minidl (once per kernel path)
and then PyTorch on the same inputs, so both see the same machine load, and the reported
ratio is the ratio of the two medians. What is measured, through the public layers and
``models.build`` (so the bench times whatever code is in the tree):

- convolution forward and backward for the named shapes in ``cases.py``, per algorithm;
- BatchNorm2d and the ReLU / LeakyReLU activations on the vgg38 feature-map size;
- one training step of vgg38 ``--bn --residual`` (Adam, cross-entropy), against the same
  network rebuilt in PyTorch (``torch_twins.py``) with the same weights;
- the machine's float32 GEMM rate, the ceiling any GEMM-based layer can reach.

Files: ``cases.py`` (the named shapes and their FLOP counts), ``timing.py`` (interleaved
timing and peak memory), ``torch_twins.py`` (the PyTorch side), ``step.py`` (the training
step, and the fresh process that measures its peak memory), ``measure.py`` (one case, all
contenders), ``report.py`` (rows, table, JSON, plot), ``cli.py`` (the command line),
``compare.py`` (the ratios of several runs side by side: before and after a change),
``epoch.py`` (``python -m minidl.bench epoch``: a whole Fashion-MNIST epoch per contender,
batch by batch in turn) and ``profile.py`` (``python -m minidl.bench profile``: a step's
time per kind of op, minidl and PyTorch).
"""
