"""vgg19 / vgg14_mixed and the VGG options of the survey's and slides' experiments: kernel size,
norm, activation (CReLU doubles the channels), down-sampling, head. Parameter counts by hand,
shapes through every option, gradient checks of one tiny variant per option family."""
import numpy as np
import pytest

from minidl import layers as L
from minidl import models
from minidl.gradcheck import gradcheck_layer
from minidl.models.vgg import VGG, M

# A narrow vgg19: channels 64/128/256/512 -> 4/8/16/32, FC layers of 8.
NARROW = dict(in_channels=3, num_classes=10, width=4, hidden=8)


def _check_counts(model, convs, fcs):
    """Every Conv2d/Linear as (in, out[, k]) in order, and the model's total."""
    got = [(m.in_channels, m.out_channels, m.kernel_size[0]) if isinstance(m, L.Conv2d)
           else (m.in_features, m.out_features) for _, m in model.named_layers()
           if isinstance(m, (L.Conv2d, L.Linear))]
    assert got == convs + fcs


def test_vgg19_3x3_parameter_count_by_hand():
    model = models.build("vgg19", **NARROW)
    # 16 convs (3x3, bias): 3->4, 4->4 | 4->8, 8->8 | 8->16, 16->16 x3 | 16->32, 32->32 x3 |
    # 32->32 x4; on 32x32 five pools leave 1x1, so fc1 reads 32 features.
    convs = (3 * 4 * 9 + 4) + (4 * 4 * 9 + 4) + (4 * 8 * 9 + 8) + (8 * 8 * 9 + 8) \
        + (8 * 16 * 9 + 16) + 3 * (16 * 16 * 9 + 16) + (16 * 32 * 9 + 32) \
        + 3 * (32 * 32 * 9 + 32) + 4 * (32 * 32 * 9 + 32)
    head = (32 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10)
    assert convs + head == 79_070
    assert model.num_parameters() == 79_070
    assert sum(isinstance(m, L.Conv2d) for _, m in model.named_layers()) == 16
    assert sum(isinstance(m, L.Linear) for _, m in model.named_layers()) == 3


def test_vgg19_5x5_has_25_weights_where_3x3_has_9():
    model = models.build("vgg19", kernel_size=5, **NARROW)
    weights_3x3 = 79_070 - (4 + 4 + 8 + 8 + 16 * 4 + 32 * 8) - ((32 * 8 + 8) + (8 * 8 + 8) + 90)
    assert weights_3x3 % 9 == 0
    head = (32 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10)
    biases = 4 + 4 + 8 + 8 + 16 * 4 + 32 * 8
    assert model.num_parameters() == weights_3x3 // 9 * 25 + biases + head
    conv = model.features[0].conv1
    assert conv.kernel_size == (5, 5) and conv.padding == (2, 2)


def test_crelu_doubles_what_the_next_layer_takes():
    model = models.build("vgg19", activation="crelu", **NARROW)
    # After a CReLU a c-channel map has 2c channels: every conv but the first takes twice its
    # predecessor's output, and the FC layers twice the features.
    convs = [(3, 4, 3), (8, 4, 3), (8, 8, 3), (16, 8, 3), (16, 16, 3), (32, 16, 3), (32, 16, 3),
             (32, 16, 3), (32, 32, 3), (64, 32, 3), (64, 32, 3), (64, 32, 3), (64, 32, 3),
             (64, 32, 3), (64, 32, 3), (64, 32, 3)]
    _check_counts(model, convs, [(64, 8), (16, 8), (16, 10)])
    hand = (3 * 4 + 8 * 4 + 8 * 8 + 16 * 8 + 16 * 16 + 3 * 32 * 16 + 32 * 32 + 7 * 64 * 32) * 9 \
        + (4 + 4 + 8 + 8 + 4 * 16 + 8 * 32) + (64 * 8 + 8) + (16 * 8 + 8) + (16 * 10 + 10)
    assert model.num_parameters() == hand
    y = model(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    assert y.shape == (2, 10)


@pytest.mark.parametrize("norm, kind, extra", [("none", None, 0), ("bn", L.BatchNorm2d, 2),
                                               ("lrn", L.LocalResponseNorm, 0)])
def test_norm_sits_between_each_conv_and_its_activation(norm, kind, extra):
    model = models.build("vgg19", norm=norm, **NARROW)
    scale = model.features[2]
    names = [n for n, _ in scale.named_children()]
    if kind is None:
        assert names == ["conv1", "act1", "conv2", "act2", "conv3", "act3", "conv4", "act4", "pool"]
    else:
        assert names[:3] == ["conv1", "bn1", "act1"] and isinstance(scale.bn1, kind)
    channels = 4 + 4 + 8 + 8 + 16 * 4 + 32 * 8  # every conv's output channels
    assert model.num_parameters() == 79_070 + extra * channels
    if norm == "lrn":  # AlexNet's setting, in PyTorch's alpha / size convention
        lrn = scale.bn1
        assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 5e-4, 0.75, 2.0)


def test_vgg14_mixed_is_11_convs_mixing_5x5_and_3x3_and_3_fcs():
    model = models.build("vgg14_mixed", **NARROW)
    kernels = [m.kernel_size[0] for _, m in model.named_layers() if isinstance(m, L.Conv2d)]
    assert kernels == [5, 3, 5, 3, 5, 3, 3, 5, 3, 5, 3]
    assert sum(isinstance(m, L.Linear) for _, m in model.named_layers()) == 3
    hand = (3 * 4 * 25 + 4) + (4 * 4 * 9 + 4) + (4 * 8 * 25 + 8) + (8 * 8 * 9 + 8) \
        + (8 * 16 * 25 + 16) + 2 * (16 * 16 * 9 + 16) + (16 * 32 * 25 + 32) \
        + (32 * 32 * 9 + 32) + (32 * 32 * 25 + 32) + (32 * 32 * 9 + 32) \
        + (32 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10)
    assert model.num_parameters() == hand


# ---------------------------------------------------------------- down-sampling and head
@pytest.mark.parametrize("name", ["vgg19", "vgg16", "vgg11", "vgg14_mixed"])
@pytest.mark.parametrize("downsample", ["max", "max_overlap", "stride"])
@pytest.mark.parametrize("head", ["fc", "gap"])
@pytest.mark.parametrize("size", [28, 32])
def test_every_downsample_and_head_runs_on_28_and_32(name, downsample, head, size):
    options = dict(width=4, hidden=8, downsample=downsample, head=head, image_size=size)
    if name == "vgg11":
        options["global_pool"] = False
    model = models.build(name, in_channels=1, num_classes=7, **options)
    x = np.random.default_rng(1).standard_normal((2, 1, size, size)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 7) and np.all(np.isfinite(y))
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape


def test_stride_replaces_each_pool_by_a_stride_2_last_conv_with_the_same_parameters():
    pooled = models.build("vgg19", **NARROW)
    strided = models.build("vgg19", downsample="stride", **NARROW)
    assert strided.num_parameters() == pooled.num_parameters()
    for scale in strided.features:
        children = dict(scale.named_children())
        assert "pool" not in children
        convs = [m for m in children.values() if isinstance(m, L.Conv2d)]
        assert [c.stride for c in convs] == [(1, 1)] * (len(convs) - 1) + [(2, 2)]


def test_max_overlap_is_a_3x3_stride_2_pool_and_28_takes_five_of_them():
    model = models.build("vgg19", downsample="max_overlap", image_size=28, **NARROW)
    pools = [s.pool for s in model.features]
    assert all((p.kernel_size, p.stride, p.padding) == ((3, 3), (2, 2), (1, 1)) for p in pools)
    # 28 -> 14 -> 7 -> 4 -> 2 -> 1, where 2x2 pools stop at 28 -> 14 -> 7 -> 3 -> 1
    assert len(pools) == 5
    assert len([s for s in models.build("vgg19", image_size=28, **NARROW).features
                if "pool" in dict(s.named_children())]) == 4


def test_gap_head_is_global_average_pool_and_one_linear():
    model = models.build("vgg19", head="gap", **NARROW)
    assert isinstance(model.pool, L.GlobalAvgPool2d) and isinstance(model.classifier, L.Linear)
    assert isinstance(model.dropout, L.Dropout)  # vgg19's dropout 0.2 before the classifier
    features = 79_070 - ((32 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10))
    assert model.num_parameters() == features + 32 * 10 + 10
    # no flattened head, so any input size runs
    assert model(np.zeros((1, 3, 40, 40), np.float32)).shape == (1, 10)


def test_flattened_head_refuses_another_size_and_names_the_way_out():
    model = models.build("vgg19", image_size=32, **NARROW)
    with pytest.raises(ValueError, match=r"32x32.*image_size=28.*head='gap'"):
        model(np.zeros((1, 3, 28, 28), np.float32))


@pytest.mark.parametrize("name, option, value, message", [
    ("vgg19", "norm", "layer", r"norm must be one of 'none', 'bn', 'lrn'"),
    ("vgg19", "downsample", "avg", r"downsample must be one of 'max', 'max_overlap', 'stride'"),
    ("vgg19", "head", "mlp", r"head must be one of 'fc', 'gap'"),
    ("vgg19", "kernel_size", 4, r"kernel_size must be odd"),
    ("vgg19", "activation", "relu7", r"unknown activation 'relu7'"),
    ("vgg19", "init", "xavier", r"init must be one of 'pytorch', 'he'"),
    ("sfnet", "downsample", "stride", r"downsample='stride' needs each scale to end with a conv"),
])
def test_bad_options_are_refused_by_name(name, option, value, message):
    with pytest.raises(ValueError, match=message):
        models.build(name, width=4, hidden=8, **{option: value})


def test_he_init_draws_normal_weights_of_variance_2_over_fan_in_and_zero_biases():
    model = models.build("vgg19", width=32, hidden=64, init="he", seed=1)
    for name, m in model.named_layers():
        if isinstance(m, (L.Conv2d, L.Linear)):
            fan_in = m.weight.data[0].size
            std = float(m.weight.data.std())
            assert abs(std / np.sqrt(2 / fan_in) - 1) < 0.1, name
            assert not np.any(m.bias.data), name
    again = models.build("vgg19", width=32, hidden=64, init="he", seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(model.state_dict().values(),
                                                    again.state_dict().values()))


def test_he_init_keeps_the_signal_of_a_plain_vgg19_alive():
    # With the default draw a conv+ReLU scales the signal by ~1/sqrt(6): after 16 of them the
    # logits no longer depend on the image (only the biases speak); He's N(0, 2/fan_in) keeps it of order one.
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    spread = {init: float(models.build("vgg19", width=16, hidden=64, init=init, dropout=0.0,
                                       seed=0)(x).std(axis=0).mean())
              for init in ("pytorch", "he")}
    assert spread["pytorch"] < 1e-6 and spread["he"] > 1e-2  # measured: 5e-9 and 0.08


# ---------------------------------------------------------------- gradient checks
TINY = (3, M, 4, M)  # two scales on a 4x4 input: 4 -> 2 -> 1


@pytest.mark.parametrize("options", [
    dict(kernel_size=5, activation="tanh"),
    dict(norm="bn", activation="elu"),
    dict(norm="lrn", activation="tanh"),
    dict(activation="crelu"),
    dict(activation="swish_trainable", norm="bn"),
    dict(downsample="stride", activation="tanh"),
    dict(downsample="max_overlap", activation="tanh"),
    dict(head="gap", activation="tanh", image_size=5),
], ids=["kernel5", "bn-elu", "lrn", "crelu", "swish-trainable", "stride", "max-overlap", "gap"])
def test_gradcheck_tiny_vgg_per_option(options):
    options = {"image_size": 4, **options}
    model = VGG(TINY, in_channels=2, num_classes=3, hidden=5, seed=3, **options)
    size = options["image_size"]
    x = np.random.default_rng(4).standard_normal((3, 2, size, size))
    errors = gradcheck_layer(model, x, seed=5)
    assert len(errors) == 1 + len(model.parameters())
    # A conv bias followed by BatchNorm has a zero gradient in exact arithmetic, so its
    # relative error is noise over noise: its analytic gradient is checked to vanish instead.
    if options.get("norm") == "bn":
        model.zero_grad()
        y = model(x)
        model.backward(np.random.default_rng(6).standard_normal(y.shape))
        cancelled = [n for n, _ in model.named_parameters()
                     if n.startswith("features") and ".conv" in n and n.endswith("bias")]
        assert len(cancelled) == 2
        for n, p in model.named_parameters():
            if n in cancelled:
                assert np.abs(p.grad).max() < 1e-10, n
                del errors[n]
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: {errors[worst]:.2e}"
