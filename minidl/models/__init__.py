"""The reports' networks behind one registry: ``models.build("vgg38", bn=True, residual=True)``.

Importing this package registers every family: vgg08/vgg38 (``vgg_mlp``), resnet18/resnet32,
vgg11/vgg16/vgg19/vgg14_mixed (``vgg``), sfnet, lenet5, alexnet, mobilenet, mlp.
``available()`` lists the names; ``registry.options(name)`` the options a model takes, with
their defaults.
"""
from . import alexnet, lenet, mlp, mobilenet, resnet, sfnet, vgg, vgg_mlp
from .registry import available, build, options, register

__all__ = ["available", "build", "options", "register",
           "alexnet", "lenet", "mlp", "mobilenet", "resnet", "sfnet", "vgg", "vgg_mlp"]
