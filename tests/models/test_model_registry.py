"""models.build / available / register: names, option validation, seeding."""
import numpy as np
import pytest

from minidl import models
from minidl.layers.base import Layer
from minidl.models import registry

EXPECTED = {"vgg08", "vgg38", "resnet18", "resnet32", "vgg11", "vgg16", "vgg19", "vgg14_mixed",
            "sfnet", "lenet5", "alexnet", "mobilenet", "mlp"}


@pytest.fixture
def scratch_registry(monkeypatch):
    """A private copy of the registry, so test registrations do not leak into other tests."""
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))


def test_available_lists_every_family_sorted():
    names = models.available()
    assert EXPECTED <= set(names)
    assert names == sorted(names)


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown model 'vgg99'") as err:
        models.build("vgg99")
    for name in models.available():
        assert name in str(err.value)


def test_unknown_option_is_named_with_the_valid_ones():
    with pytest.raises(ValueError) as err:
        models.build("vgg38", residul=True)
    message = str(err.value)
    assert "'residul'" in message and "vgg38" in message
    for valid in ("residual", "bn", "width", "num_blocks_per_stage", "conv_method", "seed"):
        assert valid in message


def test_an_option_of_another_model_is_rejected():
    with pytest.raises(ValueError, match="'num_filters'.*width"):
        models.build("resnet18", num_filters=8)


def test_width_is_one_name_with_the_coursework_alias():
    a = models.build("vgg08", width=4, in_channels=1, num_classes=10).state_dict()
    b = models.build("vgg08", num_filters=4, in_channels=1, num_classes=10).state_dict()
    assert a.keys() == b.keys() and a["features.entry.conv.weight"].shape[0] == 4
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    for name in ("vgg08", "vgg38", "resnet18", "vgg11", "vgg16", "sfnet"):
        assert "width" in models.options(name), name


def test_options_come_from_the_builder_signature():
    assert models.options("vgg38")["num_blocks_per_stage"] == 5
    assert models.options("vgg08")["num_blocks_per_stage"] == 0
    assert models.options("vgg38")["activation"] == "leaky_relu"
    resnet_options = set(models.options("resnet18"))
    assert {"width", "bn", "activation", "conv_method", "seed", "rng"} <= resnet_options
    assert "width_mult" in models.options("mobilenet")
    for name in models.available():
        opts = models.options(name)
        assert {"in_channels", "num_classes", "seed", "rng"} <= set(opts), name
        # every model with a convolution lets the conv algorithm be chosen (mlp has none)
        assert ("conv_method" in opts) == (name != "mlp"), name


def test_bad_option_values_raise_valueerror_naming_the_model():
    with pytest.raises(ValueError, match="VGGMLP: width"):
        models.build("vgg38", num_filters=0)
    with pytest.raises(ValueError, match="VGGMLP: width"):
        models.build("vgg38", width=0)
    with pytest.raises(ValueError, match="width=8 and num_filters=4 name the same option"):
        models.build("vgg38", width=8, num_filters=4)
    with pytest.raises(ValueError, match="dropout"):
        models.build("lenet5", dropout=1.5)
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        models.build("resnet18", width=2, activation="nope")
    with pytest.raises(ValueError, match="MobileNet.*width_mult"):
        models.build("mobilenet", width_mult=0)


def test_register_and_build_a_new_model(scratch_registry):
    @models.register("tiny")
    def tiny(in_channels: int = 3, num_classes: int = 10):
        return models.build("lenet5", in_channels=in_channels, num_classes=num_classes)

    assert "tiny" in models.available()
    assert isinstance(models.build("tiny", num_classes=3), Layer)
    with pytest.raises(ValueError, match="'depth'"):
        models.build("tiny", depth=3)


def test_register_refuses_a_taken_name(scratch_registry):
    with pytest.raises(ValueError, match="already registered"):
        models.register("vgg38")(lambda: None)


def test_a_builder_taking_kwargs_receives_any_option(scratch_registry):
    @models.register("anything")
    def anything(**opts):
        return opts

    assert models.build("anything", colour="red") == {"colour": "red"}


def test_seed_fixes_the_initial_weights():
    a = models.build("vgg08", num_filters=4, seed=3).state_dict()
    b = models.build("vgg08", num_filters=4, seed=3).state_dict()
    c = models.build("vgg08", num_filters=4, seed=4).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["classifier.weight"], c["classifier.weight"])
    # an explicit generator takes precedence over the seed
    d = models.build("vgg08", num_filters=4, seed=4, rng=np.random.default_rng(3)).state_dict()
    assert np.array_equal(a["classifier.weight"], d["classifier.weight"])


def test_dropout_does_not_change_the_initial_weights():
    plain = models.build("lenet5", seed=1).state_dict()
    dropped = models.build("lenet5", seed=1, dropout=0.5).state_dict()
    assert plain.keys() == dropped.keys()
    assert all(np.array_equal(plain[k], dropped[k]) for k in plain)
