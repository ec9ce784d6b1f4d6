"""alexnet: the paper's layer order, its ImageNet parameter count by hand, the 28/32-pixel form,
and a gradient check."""
import numpy as np
import pytest

from minidl import layers as L
from minidl import models
from minidl.gradcheck import gradcheck_layer
from minidl.summary import summary


def test_imagenet_form_parameter_count_by_hand():
    model = models.build("alexnet", num_classes=1000, stem_stride=4, image_size=224)
    convs = (3 * 96 * 121 + 96) + (96 * 256 * 25 + 256) + (256 * 384 * 9 + 384) \
        + (384 * 384 * 9 + 384) + (384 * 256 * 9 + 256)
    fcs = (256 * 6 * 6 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert model.num_parameters() == convs + fcs == 62_378_344
    assert summary(model, (3, 224, 224)).rows[0].output_shape == (96, 55, 55)


def test_the_papers_order_lrn_after_the_first_two_activations_then_overlapping_pools():
    names = [n for n, _ in models.build("alexnet", width=6, hidden=8).features.named_children()]
    assert names == ["conv1", "act1", "lrn1", "pool1", "conv2", "act2", "lrn2", "pool2",
                     "conv3", "act3", "conv4", "act4", "conv5", "act5", "pool5"]
    model = models.build("alexnet", width=6, hidden=8)
    assert (model.features.pool1.kernel_size, model.features.pool1.stride) == ((3, 3), (2, 2))
    lrn = model.features.lrn1
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 5e-4, 0.75, 2.0)
    drops = [m.p for _, m in model.classifier.named_children() if isinstance(m, L.Dropout)]
    assert drops == [0.5, 0.5]
    bn = models.build("alexnet", width=6, hidden=8, norm="bn").features
    assert isinstance(bn.bn5, L.BatchNorm2d) and "lrn1" not in dict(bn.named_children())


@pytest.mark.parametrize("size, final", [(32, 3), (28, 2)])
def test_small_image_form_keeps_conv1_size(size, final):
    model = models.build("alexnet", in_channels=1, width=6, hidden=8, image_size=size)
    s = summary(model, (1, size, size))
    shapes = {r.name: r.output_shape for r in s.rows}
    assert shapes["features.conv1"][1:] == (size, size)
    assert shapes["features.pool5"][1:] == (final, final)
    x = np.random.default_rng(0).standard_normal((2, 1, size, size)).astype(np.float32)
    assert model(x).shape == (2, 10)
    with pytest.raises(ValueError, match="image_size"):
        model(np.zeros((1, 1, size + 4, size + 4), np.float32))


def test_too_small_an_image_is_refused_by_name():
    with pytest.raises(ValueError, match="AlexNet: a 8 input is too small"):
        models.build("alexnet", image_size=8, width=6, hidden=8)


def test_gradcheck_tiny_alexnet():
    # 15x15 is the smallest input the three 3x3/2 pools leave a map for (15 -> 7 -> 3 -> 1);
    # width 1 (channels 1, 3, 4, 4, 3) keeps the check to ~4,000 forward passes. LRN included.
    model = models.build("alexnet", in_channels=1, num_classes=3, width=1, hidden=6,
                         image_size=15, activation="elu", dropout=0.0, seed=2)
    x = np.random.default_rng(1).standard_normal((2, 1, 15, 15))
    errors = gradcheck_layer(model, x, seed=3)
    assert len(errors) == 1 + len(model.parameters())
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: {errors[worst]:.2e}"
