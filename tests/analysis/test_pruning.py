"""Magnitude pruning: exact counts, the largest weights kept, layers named or refused."""
import numpy as np
import pytest

from minidl import models
from minidl.analysis import magnitude_mask, prune_layers, sparsity


def test_mask_drops_exactly_the_smallest_magnitudes():
    w = np.array([[0.5, -3.0, 0.1], [2.0, -0.2, 1.0]])
    np.testing.assert_array_equal(magnitude_mask(w, 0.5),
                                  [[False, True, False], [True, False, True]])
    assert magnitude_mask(w, 0.0).all() and not magnitude_mask(w, 1.0).any()
    ties = magnitude_mask(np.ones(10), 0.3)
    assert ties.sum() == 7  # ties broken by position: still exactly 3 dropped


def test_sparsity_counts_zeros():
    assert sparsity(np.array([0.0, 1.0, 0.0, -2.0])) == 0.5
    assert sparsity(np.array([1e-9, 1.0]), atol=1e-6) == 0.5


def test_prune_layers_zeroes_the_named_weights_in_place():
    model = models.build("lenet5", in_channels=1, num_classes=10)
    conv = dict(model.named_layers())["features.conv3"]
    big = np.abs(conv.weight.data) >= np.quantile(np.abs(conv.weight.data), 0.8)
    kept = conv.weight.data[big].copy()
    fc_before = dict(model.named_layers())["classifier.fc1"].weight.data.copy()
    result = prune_layers(model, ["features.conv3"], 0.8)
    assert result == {"features.conv3": pytest.approx(0.8, abs=1e-3)}
    np.testing.assert_array_equal(conv.weight.data[big], kept)  # the largest 20 % untouched
    np.testing.assert_array_equal(dict(model.named_layers())["classifier.fc1"].weight.data,
                                  fc_before)


def test_prune_layers_names_what_exists():
    model = models.build("lenet5", in_channels=1, num_classes=10)
    with pytest.raises(ValueError, match="features.conv9.*features.conv1"):
        prune_layers(model, ["features.conv9"], 0.5)
    with pytest.raises(ValueError, match="fraction"):
        magnitude_mask(np.ones(3), 1.5)
