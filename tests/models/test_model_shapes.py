"""Every model's output shape on 28x28 and 32x32 inputs, parameter counts and dotted names."""
import numpy as np
import pytest

from minidl import models
from minidl.layers import Conv2d

NAMES = models.available()


def test_every_registered_model_has_a_small_configuration(small):
    assert set(NAMES) == set(small)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32)], ids=["28x28x1", "32x32x3"])
def test_output_shape(name, shape, small):
    size = {"image_size": shape[2]} if "image_size" in models.options(name) else {}
    model = models.build(name, in_channels=shape[1], num_classes=7, **size, **small[name])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 7)
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y))
    model.eval()
    assert model(x).shape == (2, 7)


def test_output_dtype_follows_a_float64_input(small):
    model = models.build("vgg38", **small["vgg38"])
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16))
    assert model(x).dtype == np.float64


def test_wrong_input_channels_raise_a_named_valueerror():
    model = models.build("resnet18", in_channels=3, width=4)
    with pytest.raises(ValueError, match=r"Conv2d.*\(2, 1, 32, 32\)"):
        model(np.zeros((2, 1, 32, 32), dtype=np.float32))


# ---------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("name, options, count", [
    ("vgg38", {}, 336_196),
    ("vgg08", {}, 59_716),
    ("vgg38", {"bn": True}, 338_500),
    ("vgg38", {"bn": True, "residual": True}, 338_500),  # a skip adds no parameters
])
def test_coursework_vgg_parameter_counts(name, options, count):
    assert models.build(name, in_channels=3, num_classes=100, **options).num_parameters() == count


def test_resnet18_parameter_count_matches_torchvision_with_a_cifar_stem():
    # torchvision's resnet18 has 11,689,512 parameters (1000 classes, 7x7 stem conv). The CIFAR
    # stem is a 3x3 conv: 3*64*9 = 1,728 instead of 3*64*49 = 9,408, and a 10-class head has
    # 512*10 + 10 = 5,130 instead of 513,000: 11,689,512 - 9,408 + 1,728 - 513,000 + 5,130.
    assert models.build("resnet18", num_classes=10).num_parameters() == 11_173_962


def _conv(c_in, c_out, k=3, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def _vgg_feature_count(config, c_in, bn):
    total = 0
    for c in config:
        if c == "M":
            continue
        total += _conv(c_in, c) + (2 * c if bn else 0)
        c_in = c
    return total


def test_vgg16_parameter_count():
    config = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    head = (512 * 1024 + 1024) + 2 * 1024 + (1024 * 1024 + 1024) + 2 * 1024 + (1024 * 10 + 10)
    expected = _vgg_feature_count(config, 3, bn=True) + head
    assert expected == 14_714_688 + 8_448 + 1_589_258  # torchvision vgg16 features + BN + head
    assert models.build("vgg16").num_parameters() == expected


def test_vgg11_parameter_count():
    config = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512]
    head = (512 * 512 + 512) + (512 * 512 + 512) + (512 * 10 + 10)
    assert models.build("vgg11").num_parameters() == _vgg_feature_count(config, 3, False) + head
    assert (models.build("vgg11", bn=True).num_parameters()
            == _vgg_feature_count(config, 3, True) + head)


def test_sfnet_replaces_scales_4_and_5_by_sc_layers():
    # The paper's listing: MixedSCLayer = 3x3 conv to 16 channels + 1x1 conv to out - 16;
    # SCLayer = max pool + 1x1 conv (both with bias); each followed by BatchNorm2d.
    def mixed(c_in, c_out):
        return _conv(c_in, 16) + _conv(c_in, c_out - 16, k=1)

    scales_1_3 = _vgg_feature_count([64, 64, 128, 128, 256, 256, 256], 3, bn=True)
    scales_4_5 = (mixed(256, 512) + 2 * _conv(512, 512, k=1)
                  + mixed(512, 512) + 2 * _conv(512, 512, k=1) + 6 * 2 * 512)
    head = (512 * 1024 + 1024) + 2 * 1024 + (1024 * 1024 + 1024) + 2 * 1024 + (1024 * 10 + 10)
    sfnet = models.build("sfnet").num_parameters()
    assert sfnet == scales_1_3 + scales_4_5 + head
    assert sfnet < models.build("vgg16").num_parameters() / 2


def test_lenet5_parameter_count_is_the_papers():
    # 156 + 2,416 + 48,120 (C5) + 10,164 (F6) + 850: LeNet-5's well-known 61,706 with a 10-way
    # linear output in place of the RBF units.
    assert models.build("lenet5", in_channels=1, num_classes=10).num_parameters() == 61_706


def test_mobilenet_parameter_count():
    blocks = [(32, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512)]
    blocks += [(512, 512)] * 5 + [(512, 1024), (1024, 1024)]
    expected = 3 * 32 * 9 + 2 * 32  # stem conv (no bias) + BN
    for c_in, c_out in blocks:
        expected += c_in * 9 + 2 * c_in + c_in * c_out + 2 * c_out  # dw + BN + pw + BN
    expected += 1024 * 10 + 10
    assert models.build("mobilenet").num_parameters() == expected
    # Keras' MobileNet (alpha=1, 1000 classes) has 4,231,976 trainable parameters, the
    # paper's "4.2 million": 3,206,976 plus its 1000-way classifier (1,025,000).
    assert expected - (1024 * 10 + 10) == 3_206_976
    assert models.build("mobilenet", width_mult=0.5).num_parameters() < expected / 3


# ---------------------------------------------------------------- names
@pytest.mark.parametrize("name, options, expected", [
    ("vgg38", {"bn": True, "residual": True},
     ["features.entry.conv.weight", "features.entry.bn.running_mean",
      "features.stage0.block4.body.conv1.weight", "features.stage1.block0.body.bn2.bias",
      "features.stage2.reduction.conv2.bias", "features.stage2.reduction.bn2.running_var",
      "classifier.weight", "classifier.bias"]),
    ("vgg08", {}, ["features.entry.bn.weight", "features.stage0.reduction.conv1.weight"]),
    ("vgg38", {}, ["features.stage0.block0.conv1.weight", "features.stage2.block4.conv2.weight"]),
    ("resnet18", {"width": 4},
     ["stem.conv.weight", "stem.bn.running_mean", "layer1.0.body.conv1.weight",
      "layer2.0.shortcut.conv.weight", "layer2.0.shortcut.bn.bias", "layer4.1.body.bn2.weight",
      "classifier.weight"]),
    ("vgg16", {"width": 4, "hidden": 8},
     ["features.0.conv1.weight", "features.0.bn2.running_var", "features.4.conv3.bias",
      "classifier.fc1.weight", "classifier.bn2.running_mean", "classifier.fc3.bias"]),
    ("sfnet", {"width": 4, "hidden": 8, "mixed_channels": 4},
     ["features.2.conv3.weight", "features.3.mixed1.conv.weight",
      "features.3.mixed1.sc.conv.weight",
      "features.3.sc2.conv.bias", "features.4.sc3.conv.weight", "classifier.fc3.weight"]),
    ("lenet5", {}, ["features.conv3.weight", "classifier.fc1.weight", "classifier.fc2.bias"]),
    ("mobilenet", {"width_mult": 0.125},
     ["stem.conv.weight", "blocks.0.dw.weight", "blocks.12.pw.weight", "blocks.12.bn2.running_var",
      "classifier.weight"]),
])
def test_dotted_names(name, options, expected):
    state = models.build(name, **options).state_dict()
    missing = [key for key in expected if key not in state]
    assert not missing, f"{name}: missing {missing}; have e.g. {list(state)[:6]}"


@pytest.mark.parametrize("name", NAMES)
def test_names_are_unique_and_the_head_comes_last(name, small):
    model = models.build(name, **small[name])
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == len(set(names))
    assert names[-1].startswith("classifier.")
    assert all(".." not in n and not n.startswith(".") for n in names)


def test_processing_blocks_without_bn_have_no_conv_bias():
    names = [n for n, _ in models.build("vgg38").named_parameters()]
    assert not any(".block" in n and n.endswith(".bias") for n in names)
    assert sum(n.endswith("reduction.conv1.bias") for n in names) == 3


@pytest.mark.parametrize("name", [n for n in NAMES if n != "mlp"])  # mlp has no convolution
def test_conv_method_reaches_every_convolution(name, small):
    model = models.build(name, conv_method="fft", **small[name])
    methods = {layer.method for _, layer in model.named_layers() if isinstance(layer, Conv2d)}
    assert methods == {"fft"}


def test_conv_methods_give_the_same_model_output(small):
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    outputs = [models.build("sfnet", conv_method=m, **small["sfnet"]).astype(np.float64)(x)
               for m in ("im2col", "fft")]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- the papers' forms
def _children(layer):
    return [(name, type(child).__name__) for name, child in layer.named_children()]


def test_vgg16_closes_every_scale_with_a_max_pool_and_flattens():
    """The SfNet preprint's Table 1: five scales, each closed by a 2x2 max pool; flatten; head."""
    model = models.build("vgg16", width=4, hidden=8)
    assert [type(scale[-1]).__name__ for scale in model.features] == ["MaxPool2d"] * 5
    assert [name for name, _ in _children(model)] == ["features", "flatten", "classifier"]
    assert model.classifier.fc1.in_features == 32  # 8 * width channels on a 1x1 map
    # at ImageNet size the head reads the 7x7 map: the listing's in_size = 49
    big = models.build("vgg16", width=4, hidden=8, image_size=224)
    assert big.classifier.fc1.in_features == 32 * 49
    y = models.build("vgg16", width=4, hidden=8, image_size=64)(
        np.zeros((2, 3, 64, 64), np.float32))
    assert y.shape == (2, 10)


def test_vgg16_at_28x28_leaves_out_the_fifth_pool():
    """The rule for 28x28: a scale whose map already has a side of 1 ends without its pool."""
    model = models.build("vgg16", in_channels=1, width=4, hidden=8, image_size=28)
    assert ["pool" in dict(scale.named_children()) for scale in model.features] == [
        True, True, True, True, False]
    assert model.classifier.fc1.in_features == 32  # 28 -> 14 -> 7 -> 3 -> 1: a 1x1 map
    assert model.num_parameters() == models.build("vgg16", in_channels=1, width=4,
                                                  hidden=8).num_parameters()


def test_vgg16_refuses_an_input_it_was_not_built_for():
    model = models.build("vgg16", width=4, hidden=8)
    with pytest.raises(ValueError, match=r"built for 32x32 inputs.*got 28x28.*image_size=28"):
        model(np.zeros((1, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="image_size"):
        models.build("vgg16", image_size=0)


@pytest.mark.parametrize("name", ["vgg16", "sfnet"])
def test_global_pool_is_the_named_variant(name, small):
    paper = models.build(name, **small[name])
    variant = models.build(name, global_pool=True, **small[name])
    assert "pool" not in dict(paper.named_children())
    assert isinstance(dict(variant.named_children())["pool"], type(variant.pool))
    assert "pool" not in dict(variant.features[4].named_children())  # no fifth max pool
    # same parameters (1x1 final map at 32x32), different function: a max against an average
    assert paper.num_parameters() == variant.num_parameters()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    variant.load_state_dict(paper.state_dict())
    paper.eval(), variant.eval()
    difference = np.abs(paper.astype(np.float64)(x) - variant.astype(np.float64)(x)).max()
    if name == "vgg16":
        # (narrow and in eval mode the logits barely move, but far beyond float64 rounding)
        assert difference > 1e-9
    else:
        # sfnet's last scale runs on 2x2, where each SCLayer's 3x3 max pool (stride 1) sees
        # the whole map: every position holds the same values, and a max over them equals
        # their average. The two heads differ only from 64x64 inputs on.
        assert difference == 0
    # any input size for the variant
    assert variant(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 10)


def test_vgg11_keeps_global_pooling_by_default(small):
    assert "pool" in dict(models.build("vgg11", **small["vgg11"]).named_children())
    assert "pool" not in dict(models.build("vgg11", global_pool=False,
                                           **small["vgg11"]).named_children())


def test_vgg16_configuration_d_has_no_batchnorm():
    from minidl.models.vgg import CONFIG_D

    options = {**CONFIG_D, "width": 4, "hidden": 16, "image_size": 32}
    model = models.build("vgg16", **options)
    kinds = {type(layer).__name__ for _, layer in model.named_layers()}
    assert not kinds & {"BatchNorm1d", "BatchNorm2d"} and "Dropout" in kinds
    assert CONFIG_D == {"bn": False, "hidden": 4096, "dropout": 0.5, "image_size": 224}


def test_lenet5_lecun_form_pools_before_the_activation():
    model = models.build("lenet5", pool="avg", activation="tanh")
    assert _children(model.features) == [
        ("conv1", "Conv2d"), ("pool1", "AvgPool2d"), ("act1", "Tanh"),
        ("conv2", "Conv2d"), ("pool2", "AvgPool2d"), ("act2", "Tanh"),
        ("conv3", "Conv2d"), ("act3", "Tanh")]
    assert model.num_parameters() == models.build("lenet5").num_parameters() == 61_706
    with pytest.raises(ValueError, match="pool must be one of"):
        models.build("lenet5", pool="sum")


def test_lenet5_relu_max_variant_is_unchanged_by_the_order():
    """ReLU commutes with a max, so pooling first gives what activating first gave."""
    from minidl import layers as L

    model = models.build("lenet5").astype(np.float64)
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28))
    f = model.features
    out = L.MaxPool2d(2)(L.ReLU()(f.conv1(x)))
    out = L.ReLU()(f.conv3(L.MaxPool2d(2)(L.ReLU()(f.conv2(out)))))
    np.testing.assert_allclose(f(x), out, rtol=1e-12)


def test_resnet18_plain_has_no_shortcut():
    from minidl import layers as L

    plain = models.build("resnet18", shortcut=False)
    assert not any(isinstance(layer, L.Residual) for _, layer in plain.named_layers())
    # the three 1x1 projection convs and their BatchNorms are gone, nothing else
    projections = sum(c_in * c_out + 2 * c_out for c_in, c_out in [(64, 128), (128, 256),
                                                                    (256, 512)])
    assert plain.num_parameters() == 11_173_962 - projections == 11_000_138
    names = {n for n, _ in plain.named_parameters()}
    assert "layer2.0.body.conv1.weight" in names and not any("shortcut" in n for n in names)


def test_mobilenet_imagenet_stem_and_full_convolution():
    from minidl.summary import summary

    rows = summary(models.build("mobilenet", stem_stride=2, width_mult=0.25),
                   (3, 224, 224)).rows
    assert rows[0].output_shape == (8, 112, 112)
    assert summary(models.build("mobilenet", width_mult=0.25),
                   (3, 32, 32)).rows[0].output_shape == (8, 32, 32)  # the CIFAR variant
    full = models.build("mobilenet", separable=False, width_mult=0.125)
    assert _children(full.blocks[1]) == [("conv", "Conv2d"), ("bn", "BatchNorm2d"),
                                         ("act", "ReLU")]
    assert full.blocks[1].conv.stride == (2, 2) and full.blocks[1].conv.groups == 1
    y = full(np.zeros((2, 3, 32, 32), np.float32))
    assert y.shape == (2, 10)
    with pytest.raises(ValueError, match="stem_stride"):
        models.build("mobilenet", stem_stride=0)
