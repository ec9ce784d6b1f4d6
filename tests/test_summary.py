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
    model = models.build(name, in_channels=1, num_classes=7).eval()
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
