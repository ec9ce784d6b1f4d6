"""mlp: the dark-knowledge teacher (784-1200-1200-10, dropout on input and hidden layers) and
student (784-800-800-10): counts by hand, layout, input shapes, a gradient check."""
import numpy as np
import pytest

from minidl import layers as L
from minidl import models
from minidl.gradcheck import gradcheck_layer


def test_teacher_and_student_parameter_counts_by_hand():
    teacher = models.build("mlp", dropout=0.5, input_dropout=0.2)
    student = models.build("mlp", hidden=(800, 800))
    assert teacher.num_parameters() == (784 * 1200 + 1200) + (1200 * 1200 + 1200) \
        + (1200 * 10 + 10) == 2_395_210
    assert student.num_parameters() == (784 * 800 + 800) + (800 * 800 + 800) \
        + (800 * 10 + 10) == 1_276_810


def test_layout_input_dropout_first_then_dropout_after_each_hidden_activation():
    teacher = models.build("mlp", dropout=0.5, input_dropout=0.2)
    names = [n for n, _ in teacher.named_children()]
    assert names == ["flatten", "drop0", "fc1", "act1", "drop1", "fc2", "act2", "drop2",
                     "classifier"]
    assert (teacher.drop0.p, teacher.drop1.p, teacher.drop2.p) == (0.2, 0.5, 0.5)
    student = models.build("mlp", hidden=(800, 800))
    assert [n for n, _ in student.named_children()] == ["flatten", "fc1", "act1", "fc2", "act2",
                                                        "classifier"]


def test_images_and_flat_vectors_both_go_in():
    model = models.build("mlp", hidden=16)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(model(images), model(images.reshape(3, 784)))
    rgb = models.build("mlp", hidden=[16], in_channels=3, image_size=32)
    assert rgb.fc1.in_features == 3 * 32 * 32
    with pytest.raises(ValueError, match="784"):
        model(rng.standard_normal((3, 1, 32, 32)).astype(np.float32))


def test_crelu_doubles_the_next_layers_features():
    model = models.build("mlp", hidden=(8, 6), activation="crelu")
    assert (model.fc2.in_features, model.classifier.in_features) == (16, 12)


@pytest.mark.parametrize("hidden", [0, (8, -1), "1200", (8.5,)])
def test_bad_hidden_is_refused_by_name(hidden):
    with pytest.raises(ValueError, match=r"MLP: hidden must be a positive int or a sequence"):
        models.build("mlp", hidden=hidden)


def test_gradcheck_with_dropout_masks_fixed():
    model = models.build("mlp", hidden=(6, 5), dropout=0.5, input_dropout=0.2, image_size=3,
                         activation="elu", seed=1)
    drops = [m for _, m in model.named_layers() if isinstance(m, L.Dropout)]
    assert len(drops) == 3

    def fix_masks():  # every forward of the check draws the same masks
        for k, d in enumerate(drops):
            d.rng = np.random.default_rng(10 + k)

    x = np.random.default_rng(2).standard_normal((4, 1, 3, 3))
    errors = gradcheck_layer(model, x, seed=3, before_forward=fix_masks)
    assert len(errors) == 1 + len(model.parameters())
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: {errors[worst]:.2e}"
    fix_masks()
    y_train = model(x)
    model.eval()
    assert not np.allclose(y_train, model(x))  # the masks really dropped units
