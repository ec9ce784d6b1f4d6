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
