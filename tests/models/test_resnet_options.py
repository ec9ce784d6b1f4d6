"""resnet32 (He et al.'s CIFAR network, the slides' Table VI) and the ResNet options of the
pool-vs-stride study: downsample stride/max/max_overlap, head gap/fc, with CReLU sizing."""
import numpy as np
import pytest

from minidl import layers as L
from minidl import models
from minidl.gradcheck import gradcheck_layer
from minidl.models.resnet import ResNet


def test_resnet32_parameter_count_by_hand():
    def conv(c_in, c_out, k=3):
        return c_in * c_out * k * k  # no bias: BatchNorm follows

    def bn(c):
        return 2 * c

    stem = conv(3, 16) + bn(16)
    stage1 = 5 * (2 * conv(16, 16) + 2 * bn(16))
    stage2 = conv(16, 32) + conv(32, 32) + 2 * bn(32) + 4 * (2 * conv(32, 32) + 2 * bn(32))
    stage3 = conv(32, 64) + conv(64, 64) + 2 * bn(64) + 4 * (2 * conv(64, 64) + 2 * bn(64))
    head = 64 * 10 + 10
    projections = conv(16, 32, 1) + bn(32) + conv(32, 64, 1) + bn(64)
    model = models.build("resnet32")
    assert model.num_parameters() == stem + stage1 + stage2 + stage3 + head + projections
    # without the two projections: the paper's option-A count, "0.46 M"
    assert stem + stage1 + stage2 + stage3 + head == 464_154
    convs = sum(isinstance(m, L.Conv2d) for _, m in model.named_layers())
    assert convs == 31 + 2  # 31 convs of the 32 layers, and the two projections


@pytest.mark.parametrize("name", ["resnet18", "resnet32"])
@pytest.mark.parametrize("downsample", ["stride", "max", "max_overlap"])
@pytest.mark.parametrize("head", ["gap", "fc"])
@pytest.mark.parametrize("size", [28, 32])
def test_every_downsample_and_head_runs(name, downsample, head, size):
    model = models.build(name, in_channels=1, num_classes=7, width=2, hidden=8,
                         downsample=downsample, head=head, image_size=size)
    x = np.random.default_rng(0).standard_normal((2, 1, size, size)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 7) and np.all(np.isfinite(y))
    assert model.backward(np.ones_like(y)).shape == x.shape


def test_max_opens_each_down_sampling_stage_with_a_pool_and_keeps_stride_1():
    model = models.build("resnet32", width=2, downsample="max")
    assert "pool" not in dict(model.layer1.named_children())
    for stage in (model.layer2, model.layer3):
        assert (stage.pool.kernel_size, stage.pool.stride) == ((2, 2), (2, 2))
        assert all(m.stride == (1, 1) for _, m in stage.named_layers() if isinstance(m, L.Conv2d))
    overlap = models.build("resnet32", width=2, downsample="max_overlap")
    pool = overlap.layer2.pool
    assert (pool.kernel_size, pool.stride, pool.padding) == ((3, 3), (2, 2), (1, 1))
    strided = models.build("resnet32", width=2)
    block = dict(strided.layer2.named_children())["0"]
    assert block.body.conv1.stride == (2, 2) and block.shortcut.conv.stride == (2, 2)
    # the same parameters: a pool has none, and the projection is still needed for 2 -> 4
    assert model.num_parameters() == strided.num_parameters() == overlap.num_parameters()


def test_fc_head_reads_the_flattened_final_map():
    model = models.build("resnet32", width=2, head="fc", hidden=8, image_size=32)
    gap = models.build("resnet32", width=2)
    # 32 -> 16 -> 8: 8 channels of 8x8 into [FC-8, ReLU] x 2, FC-10
    head = (8 * 8 * 8 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10)
    assert model.num_parameters() == gap.num_parameters() - (8 * 10 + 10) + head
    with pytest.raises(ValueError, match=r"32x32.*image_size=28.*head='gap'"):
        model(np.zeros((1, 3, 28, 28), np.float32))


@pytest.mark.parametrize("option, value", [("downsample", "conv"), ("head", "mlp")])
def test_bad_options_are_refused_by_name(option, value):
    with pytest.raises(ValueError, match=f"ResNet: {option} must be one of"):
        models.build("resnet32", **{option: value})


@pytest.mark.parametrize("options", [
    dict(downsample="max", activation="tanh"),
    dict(downsample="max_overlap", head="fc", activation="elu"),
    dict(activation="crelu", head="fc"),
    dict(activation="tanh", shortcut=False, downsample="max"),
], ids=["max", "overlap-fc", "crelu-fc", "plain-max"])
def test_gradcheck_tiny_resnet_per_option(options):
    model = ResNet((1, 1), in_channels=2, num_classes=3, width=2, hidden=4, image_size=4,
                   seed=1, **options)
    x = np.random.default_rng(2).standard_normal((3, 2, 4, 4))
    errors = gradcheck_layer(model, x, seed=3)
    assert len(errors) == 1 + len(model.parameters())
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: {errors[worst]:.2e}"
