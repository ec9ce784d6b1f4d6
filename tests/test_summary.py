"""minidl.summary: shape propagation, parameter and mult-add counts, the CLI."""
import json

import numpy as np
import pytest

from minidl import layers as L
from minidl import models
from minidl.summary import SummaryError, main, summary


def test_inception_slide_5x5_example():
    """The Inception slides' worked example (seed 002): a 5x5 conv, 192 -> 32 channels on 28x28."""
    s = summary(L.Conv2d(192, 32, 5, padding=2, bias=False), (192, 28, 28))
    assert s.params == 5 * 5 * 192 * 32 == 153_600
    assert s.mult_adds == 120_422_400
    # ... and with a 1x1 reduction to 16 channels first: 2,408,448 + 10,035,200 = 12,443,648.
    reduced = L.Sequential(L.Conv2d(192, 16, 1, bias=False), L.Conv2d(16, 32, 5, padding=2, bias=False))
    s = summary(reduced, (192, 28, 28))
    assert [r.mult_adds for r in s.rows] == [2_408_448, 10_035_200]
    assert s.mult_adds == 12_443_648
    assert s.output_shape == (32, 28, 28)


def test_depthwise_and_linear_counts():
    s = summary(L.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), (64, 14, 14))
    assert s.mult_adds == 64 * 1 * 9 * 14 * 14 and s.params == 64 * 9
    s = summary(L.Linear(784, 100), (784,))
    assert s.mult_adds == 78_400 and s.params == 78_500


def _every_leaf_net():
    return L.Sequential(
        L.Conv2d(3, 8, 3, padding=1), L.BatchNorm2d(8), L.ReLU(), L.MaxPool2d(2),
        L.Residual(L.Sequential(L.Conv2d(8, 8, 3, padding=1), L.LeakyReLU())),
        L.MixedSCLayer(8, 12, conv_channels=4), L.SCLayer(12, 6), L.ELU(),
        L.AvgPool2d(3, stride=2, padding=1), L.Conv2d(6, 6, 3, stride=2, dilation=1, padding=1),
        L.Tanh(), L.Flatten(), L.Linear(6 * 2 * 2, 10), L.BatchNorm1d(10), L.Sigmoid(),
        L.Swish(), L.Dropout(0.5), L.Linear(10, 4))


def test_row_shapes_match_a_real_forward():
    net = _every_leaf_net().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 13, 13)).astype(np.float32)
    s = summary(net, (3, 13, 13))
    out = x
    top_level = {}
    for name, child in net.named_children():
        out = child(out)
        top_level[name] = out.shape[1:]
    # The last row under each top-level child gives that child's output shape (not so for
    # MixedSCLayer, whose rows are its two parallel branches; the SCLayer after it checks the
    # concatenated channels).
    for name, shape in top_level.items():
        if isinstance(net[int(name)], L.MixedSCLayer):
            continue
        last = [r for r in s.rows if r.name == name or r.name.startswith(name + ".")][-1]
        assert last.output_shape == shape, name
    assert s.params == net.num_parameters()


@pytest.mark.parametrize("name", models.available())
def test_every_model_counts_like_its_forward(name):
    size = {"image_size": 28} if "image_size" in models.options(name) else {}
    model = models.build(name, in_channels=1, num_classes=7, **size).eval()
    s = summary(model, (1, 28, 28))
    out = model(np.zeros((1, 1, 28, 28), np.float32))
    assert s.output_shape == out.shape[1:] == (7,)
    assert s.params == model.num_parameters() == sum(r.params for r in s.rows)
    assert s.mult_adds == sum(r.mult_adds for r in s.rows) > 0


def test_mult_adds_scale_with_resolution_squared():
    model = models.build("vgg38", in_channels=3, num_classes=10)
    convs = [r.mult_adds for r in summary(model, (3, 32, 32)).rows if r.kind == "Conv2d"]
    convs_64 = [r.mult_adds for r in summary(model, (3, 64, 64)).rows if r.kind == "Conv2d"]
    assert [4 * c for c in convs] == convs_64


def test_bad_shapes_are_named():
    with pytest.raises(SummaryError, match=r"expects 3-d input with 3 channels.*\(1, 28, 28\)"):
        summary(L.Conv2d(3, 4, 3), (1, 28, 28))
    with pytest.raises(SummaryError, match=r"layer 2: .*too small"):
        summary(L.Sequential(L.Conv2d(1, 2, 3), L.MaxPool2d(2), L.Conv2d(2, 2, 5)), (1, 8, 8))
    with pytest.raises(SummaryError, match="input_shape"):
        summary(L.ReLU(), (0, 3))


def test_unknown_layer_says_how_to_register():
    class Mystery(L.Layer):
        def forward(self, x):
            return x

    with pytest.raises(SummaryError, match="no rule for Mystery.*rule"):
        summary(L.Sequential(Mystery()), (3,))


def test_cli_table_and_json(capsys):
    assert main(["lenet5", "--input", "1", "28", "28"]) == 0
    table = capsys.readouterr().out
    assert "features.conv1" in table and "mult-adds" in table and "61,706" in table
    assert main(["mobilenet", "--width-mult", "0.5", "--input", "3", "32", "32", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"layers", "params", "mult_adds"}
    model = models.build("mobilenet", in_channels=3, num_classes=10, width_mult=0.5)
    assert data["params"] == model.num_parameters()
    assert data["mult_adds"] == sum(layer["mult_adds"] for layer in data["layers"])


def test_cli_errors_are_one_line(capsys):
    assert main(["lenet5", "--input", "1", "2", "2"]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and "Traceback" not in err
    assert main(["lenet5", "--no-such-option", "3"]) == 2
    assert main(["no-such-model"]) == 2


# ---------------------------------------------------------------- the papers' own tables
# What we count, as the MobileNet paper does: multiply-accumulates of the Conv2d and Linear
# layers for one 3x224x224 image (biases, BatchNorm, activations, pooling: 0), and every
# parameter of the model, BatchNorm's weight and bias included (without them MobileNet has
# 4,210,088 instead of 4,231,976: both print as 4.2 M). The slides' tables (seed 002, Tables
# 4, 6, 7, 8) give mult-adds to 3-4 significant figures and parameters to 2-3. Our counts must
# agree within 0.5 % for mult-adds (the tables print 290.7 M as 290 and 4,867 M as 4,866) and
# round to the table's parameter figure; one block more or less, or a stride or width changed,
# moves the total by far more (MobileNet-224's stem alone is 1.9 % of it, its smallest block
# 4.6 %).
MULT_ADDS_TOLERANCE = 0.005


def _paper_mobilenet(resolution=224, **options):
    model = models.build("mobilenet", stem_stride=2, num_classes=1000, seed=None, **options)
    return summary(model, (3, resolution, resolution))


def _assert_table_row(s, mult_adds_m, params_m):
    assert abs(s.mult_adds / 1e6 - mult_adds_m) <= MULT_ADDS_TOLERANCE * mult_adds_m, s.mult_adds
    digits = 1 if params_m < 100 else 0
    assert round(s.params / 1e6, digits) == params_m, s.params


@pytest.mark.parametrize("width_mult, mult_adds_m, params_m", [
    (1.0, 569, 4.2), (0.75, 325, 2.6), (0.5, 149, 1.3), (0.25, 41, 0.5)])
def test_mobilenet_width_multiplier_table_6(width_mult, mult_adds_m, params_m):
    _assert_table_row(_paper_mobilenet(width_mult=width_mult), mult_adds_m, params_m)


@pytest.mark.parametrize("resolution, mult_adds_m", [(224, 569), (192, 418), (160, 290),
                                                     (128, 186)])
def test_mobilenet_resolution_table_7(resolution, mult_adds_m):
    s = _paper_mobilenet(resolution)
    _assert_table_row(s, mult_adds_m, 4.2)
    assert s.rows[-1].output_shape == (1000,)
    # the stride-2 stem and four stride-2 blocks: 224 -> 7, the paper's final 7x7x1024 map
    last_map = [r for r in s.rows if r.kind == "Conv2d"][-1].output_shape
    assert last_map == (1024, resolution // 32, resolution // 32)


def test_conv_mobilenet_table_4():
    """Each depthwise-separable block replaced by one full 3x3 convolution."""
    full = _paper_mobilenet(separable=False)
    _assert_table_row(full, 4866, 29.3)
    assert full.mult_adds == 4_867_293_184 and full.params == 29_294_088
    separable = _paper_mobilenet()
    assert separable.mult_adds == 568_740_352 and separable.params == 4_231_976
    # "95% of the computation happens in 1x1 convolutions" (the MobileNet slide)
    pointwise = sum(r.mult_adds for r in separable.rows if r.name.endswith(".pw"))
    assert 0.94 < pointwise / separable.mult_adds < 0.96


def test_vgg16_configuration_d_table_8():
    """VGG-16 at 224x224, 1000 classes, the 4096-wide classifier: 15,300 M and 138 M.

    torchvision's vgg16 has the same 138,357,544 parameters. The 15,300 M of Table 8 is the
    13 convolutions' 15,347 M to 3 significant figures; the three FC layers add 124 M more
    (1.1 % over the table), so the total is held to 1.5 % and the convolutions to 0.5 %.
    """
    from minidl.models.vgg import CONFIG_D

    model = models.build("vgg16", num_classes=1000, seed=None, **CONFIG_D)
    s = summary(model, (3, 224, 224))
    assert s.params == 138_357_544
    assert round(s.params / 1e6) == 138
    convs = sum(r.mult_adds for r in s.rows if r.kind == "Conv2d")
    fcs = sum(r.mult_adds for r in s.rows if r.kind == "Linear")
    assert fcs == 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    assert abs(convs / 1e6 - 15300) <= MULT_ADDS_TOLERANCE * 15300
    assert abs(s.mult_adds / 1e6 - 15300) <= 0.015 * 15300
    assert [r.output_shape for r in s.rows if r.kind == "Flatten"] == [(512 * 7 * 7,)]


def test_cli_reproduces_table_6_row(capsys):
    argv = ["mobilenet", "--width-mult", "0.5", "--stem-stride", "2", "--input", "3", "224",
            "224", "--classes", "1000", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mult_adds"] == _paper_mobilenet(width_mult=0.5).mult_adds
    assert main(["mobilenet", "--no-separable", "--stem-stride", "2", "--input", "3", "224",
                 "224", "--classes", "1000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 29_294_088


def test_vgg16_at_28x28_counts_four_pools():
    """28x28 through five scales: 28 -> 14 -> 7 -> 3 -> 1, the fifth scale without its pool."""
    model = models.build("vgg16", in_channels=1, width=4, hidden=8, image_size=28)
    pools = [r.output_shape[1:] for r in summary(model, (1, 28, 28)).rows
             if r.kind == "MaxPool2d"]
    assert pools == [(14, 14), (7, 7), (3, 3), (1, 1)]
    model = models.build("vgg16", in_channels=1, width=4, hidden=8)
    pools = [r.output_shape[1:] for r in summary(model, (1, 32, 32)).rows
             if r.kind == "MaxPool2d"]
    assert pools == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


def test_cli_passes_the_image_size_to_models_built_for_one(capsys):
    """vgg16/sfnet size their pools and head from image_size: the CLI takes it from --input."""
    assert main(["sfnet", "--input", "1", "28", "28", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    model = models.build("sfnet", in_channels=1, num_classes=10, image_size=28)
    assert data["params"] == model.num_parameters()
    assert main(["vgg16", "--input", "3", "224", "224", "--classes", "1000", "--hidden", "4096",
                 "--no-bn", "--dropout", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 138_357_544  # VGG-16 configuration D


# ---------------------------------------------------------------- the option variants (issue 11)
def _leaf_output_shapes(model, x) -> dict:
    """``{dotted name: output shape without the batch axis}`` of every leaf layer, recorded
    during a real forward pass."""
    shapes = {}
    for name, layer in model.named_layers():
        if layer._children:
            continue

        def recording(inp, _forward=layer.forward, _name=name):
            out = _forward(inp)
            shapes[_name] = tuple(out.shape[1:])
            return out
        layer.forward = recording  # an instance attribute: Layer.__call__ finds it first
    model(x)
    return shapes


VARIANTS = [
    ("vgg19", dict(width=4, hidden=8, kernel_size=5, norm="lrn", activation="crelu")),
    ("vgg19", dict(width=4, hidden=8, downsample="stride", head="gap", norm="bn")),
    ("vgg19", dict(width=4, hidden=8, downsample="max_overlap", activation="swish_trainable")),
    ("vgg14_mixed", dict(width=4, hidden=8, init="he")),
    ("vgg16", dict(width=4, hidden=8, downsample="max_overlap", head="gap")),
    ("sfnet", dict(width=4, hidden=8, mixed_channels=4, pool_size=5, activation="crelu")),
    ("sfnet", dict(width=4, hidden=8, mixed_channels=4, pool_size=5, mixed_conv_kernel=3)),
    ("resnet32", dict(width=2, downsample="max", head="fc", hidden=8)),
    ("resnet32", dict(width=2, downsample="max_overlap", activation="crelu")),
    ("resnet18", dict(width=2, shortcut=False, downsample="max")),
    ("alexnet", dict(width=6, hidden=8, norm="bn")),
    ("alexnet", dict(width=6, hidden=8, activation="crelu")),
    ("mlp", dict(hidden=(8, 6), dropout=0.5, input_dropout=0.2, activation="crelu")),
    ("lenet5", dict(activation="crelu", pool="avg")),
    ("mobilenet", dict(width_mult=0.125, activation="crelu")),
    ("vgg38", dict(num_filters=4, num_blocks_per_stage=1, bn=True, residual=True,
                   activation="crelu")),
]


@pytest.mark.parametrize("name, options", VARIANTS,
                         ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in VARIANTS])
@pytest.mark.parametrize("size", [28, 32])
def test_every_option_variant_counts_like_its_forward(name, options, size):
    image = {"image_size": size} if "image_size" in models.options(name) else {}
    model = models.build(name, in_channels=1, num_classes=7, **image, **options).eval()
    s = summary(model, (1, size, size))
    real = _leaf_output_shapes(model, np.zeros((1, 1, size, size), np.float32))
    assert {r.name: r.output_shape for r in s.rows} == real
    assert s.output_shape == (7,)
    assert s.params == model.num_parameters()


def test_mult_adds_of_lenet5_with_crelu_by_hand():
    # conv1 1->6 5x5 on 28x28 (pad 2); conv2 12->16 on 14x14 -> 10x10; conv3 32->120 on 5x5
    # -> 1x1; fc1 240->84; fc2 168->10
    s = summary(models.build("lenet5", activation="crelu"), (1, 28, 28))
    assert s.mult_adds == 6 * 25 * 28 * 28 + 16 * 12 * 25 * 10 * 10 + 120 * 32 * 25 \
        + 240 * 84 + 168 * 10 == 715_440


def test_mult_adds_of_a_strided_vgg_are_a_quarter_of_the_pooled_last_convs():
    # stride 2 in a scale's last conv computes a quarter of its outputs
    pooled = summary(models.build("vgg19", width=4, hidden=8), (3, 32, 32))
    strided = summary(models.build("vgg19", width=4, hidden=8, downsample="stride"), (3, 32, 32))
    rows = {r.name: r.mult_adds for r in pooled.rows}
    for r in strided.rows:
        if r.kind == "Conv2d":
            last = r.name.endswith(".conv2") and r.name.startswith(("features.0", "features.1")) \
                or r.name.endswith(".conv4")
            assert r.mult_adds == (rows[r.name] // 4 if last else rows[r.name]), r.name
    assert strided.params == pooled.params


def test_cli_takes_model_kwargs_spelt_as_train(capsys):
    assert main(["mlp", "--model-kwargs", "hidden=(800,800)", "--input", "1", "28", "28",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 1_276_810 and out["mult_adds"] == 784 * 800 + 800 * 800 + 8_000
    assert main(["vgg19", "--model-kwargs", "kernel_size=5", "activation=crelu", "width=4",
                 "hidden=8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = models.build("vgg19", kernel_size=5, activation="crelu", width=4, hidden=8)
    assert out["params"] == model.num_parameters()
    assert out["mult_adds"] == summary(model, (3, 32, 32)).mult_adds


@pytest.mark.parametrize("argv, message", [
    (["vgg19", "--model-kwargs", "kernel_sise=5"], "has no option 'kernel_sise'"),
    (["vgg19", "--width", "8", "--model-kwargs", "width=4"], "both set width"),
    (["vgg19", "--model-kwargs", "in_channels=1"], "cannot set in_channels"),
    (["vgg19", "--model-kwargs", "norm=layer"], "norm must be one of"),
    (["vgg19", "--model-kwargs", "norm"], "expected KEY=VALUE"),
])
def test_cli_model_kwargs_errors_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
