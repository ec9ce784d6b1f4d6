"""filter_grid: tiles land where the layout says, each scaled to [0, 1] on its own."""
import numpy as np
import pytest

from minidl.analysis import filter_grid


def test_grey_tiles_are_placed_row_major_and_min_max_scaled():
    w = np.zeros((5, 1, 2, 3))
    for i in range(5):
        w[i, 0] = i + np.arange(6).reshape(2, 3)  # each filter: 0..5 shifted by i
    image = filter_grid(w, pad=1)
    assert image.shape == (2 * 3 - 1, 3 * 4 - 1)  # ceil(sqrt(5)) = 3 columns, 2 rows
    expected_tile = np.arange(6).reshape(2, 3) / 5  # the shift disappears in the scaling
    for i in range(5):
        r, c = divmod(i, 3)
        np.testing.assert_allclose(image[3 * r:3 * r + 2, 4 * c:4 * c + 3], expected_tile)
    assert np.all(image[2, :] == 1) and np.all(image[:, 3] == 1)  # padding is white
    assert np.all(image[3:5, 8:11] == 1)  # the sixth place has no filter


def test_rgb_filters_keep_their_channels_as_colours():
    w = np.zeros((2, 3, 3, 3))
    w[0, 0] = 1.0   # pure red
    w[1, 2] = -1.0  # the blue channel lowest: yellow once scaled
    image = filter_grid(w, columns=2, pad=0)
    assert image.shape == (3, 6, 3)
    np.testing.assert_array_equal(image[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(image[0, 3], [1, 1, 0])


def test_constant_filter_is_mid_grey_and_bad_shapes_are_refused():
    assert np.all(filter_grid(np.full((1, 1, 3, 3), 7.0)) == 0.5)
    with pytest.raises(ValueError, match="conv weight"):
        filter_grid(np.ones((3, 3)))
