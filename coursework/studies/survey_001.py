"""Survey 001: "Efficient Methods of Training Convolution Neural Network" (Ryu), section VII:
kernel sizes (experiment a), momentum against Adam (b), activation functions (c) and the same
with a normalisation layer (d), all on CIFAR-10.

The survey's results are plots that did not survive into the text, so its "figures" here are
its findings in words (``report=``), such as "best" or "about 2x the time without BN".

Its setting (experiments a, c, d): a VGG on CIFAR-10 at image size 32, "keeping dropout
probability 0.2", 20,000 steps, Adam, learning rate 0.0002. Not given, and our choices:
- the batch size: 100, with 4 % of the 50,000 training images held out for validation, so
  an epoch is 480 steps and 42 epochs are 20,160 steps;
- the schedule: none (a constant learning rate);
- "keeping dropout probability 0.2": read as dropout with probability 0.2 in the FC head (a
  keep-probability of 0.2, 80 % dropped, would be far from VGG's own 0.5);
- the VGG's table, the width and its FC head: minidl's ``vgg19`` (configuration E, 16 convs
  of width 64 ... 512, then [FC-512, act, dropout] x 2, FC), and ``vgg14_mixed`` for the
  14-layer net (see minidl/models/vgg.py for how it mixes kernel sizes);
- where each normalisation layer sits: after every conv, before the activation;
- the initialisation: He-normal weights and zero biases (``init=he``) in every run. With
  PyTorch's default draw the plain 19-layer net does not train at all (on Fashion-MNIST at
  width 8 its loss stayed at 2.303 for 200 steps; with He's it reached 55 % in 120).
"""
from __future__ import annotations

from ..study import Run, Study

SOURCE = "seed 001 (Ryu, training-methods survey)"

STEPS_PER_EPOCH = 480  # 48,000 CIFAR-10 training images (4 % held out) / batch 100
BASE = ("--dataset", "cifar10", "--val-fraction", "0.04", "--batch-size", "100",
        "--schedule", "constant", "--seed", "0", "--model-kwargs", "init=he")
VGG_SETTINGS = ("--width", "64", "--dropout", "0.2")
SURVEY_SETTINGS = BASE + VGG_SETTINGS + ("--epochs", "42", "--optimizer", "adam", "--lr", "2e-4")
QUICK = ("--subset", "50", "--epochs", "1", "--batch-size", "50", "--width", "4",
         "--no-progress", "--no-plots")


def _vgg(name, model, kwargs, label, report, activation=None):
    """A run of ``model`` (vgg19 or vgg14_mixed) with these builder options."""
    argv = (model, "--model-kwargs", *(f"{k}={v}" for k, v in kwargs.items())) if kwargs \
        else (model,)
    if activation is not None:
        argv += ("--activation", activation)
    return Run(name, argv, label, report)


# ---------------------------------------------------------------- experiment a: kernel sizes
KERNEL_SIZES = Study(
    "kernel-sizes", "VGG-19 with 3x3 or 5x5 kernels, and a 14-layer net mixing sizes",
    f"{SOURCE}, section VII a",
    (_vgg("vgg19-3x3", "vgg19", {"kernel_size": 3}, "19 layers, only 3x3 convolutions",
          {"test_acc": "best: '3x3 operations yield sufficient results'"}),
     _vgg("vgg19-5x5", "vgg19", {"kernel_size": 5}, "19 layers, only 5x5 convolutions",
          {"test_acc": "lower: 'convergence does not work well' with larger kernels"}),
     _vgg("vgg14-mixed", "vgg14_mixed", {}, "14 layers mixing 5x5 and 3x3 convolutions",
          {"test_acc": "the aim: above the 5x5 net",
           "train_cpu_seconds": "more than the 19-layer 3x3 net"})),
    SURVEY_SETTINGS, QUICK,
    columns=("test_acc", "train_loss", "params", "mult_adds", "train_cpu_seconds"),
    notes="3x3 convolutions are enough (VGG's point); with larger kernels the network "
          "converges less well; a shallower net with larger kernels, meant to recover the "
          "accuracy, cost more time than the 19-layer 3x3 net.")

# ------------------------------------------------ experiments c and d: activations, BN, LRN
ACTIVATIONS = (("relu", "relu", "ReLU"), ("leaky-relu", "leaky_relu", "LeakyReLU (slope 0.01)"),
               ("elu", "elu", "ELU (alpha 1)"), ("swish", "swish", "Swish (beta 1, fixed)"),
               ("swish-trainable", "swish_trainable", "Swish (trainable beta, from 1)"),
               ("crelu", "crelu", "CReLU (doubles the channels)"))
# Experiment c: "Most functions (except swish) showed worse results than Relu functions,
# especially the cRelu function."
WITHOUT_NORM = {"relu": "best on average", "swish": "not below ReLU (the exception)",
                "swish-trainable": "not below ReLU (the exception)",
                "crelu": "below ReLU: the worst"}
# Experiment d: "The execution time increased nearly twice as a whole, but the tendency of
# increasing accuracy was confirmed. This tendency is evident in Crelu." The section names
# BatchNorm in its title and LRN in its text: both get the same finding.
WITH_NORM_ACC = "above the same run without it"
NORMS = (("none", "", "", None), ("bn", "-bn", ", BatchNorm", "BatchNorm"),
         ("lrn", "-lrn", ", LRN", "LRN"))


def _activation_report(name, suffix, norm_name):
    if not suffix:
        return {"test_acc": WITHOUT_NORM.get(name, "below ReLU")}
    acc = WITH_NORM_ACC + (", most clearly for CReLU" if name == "crelu" else "")
    return {"test_acc": acc, "train_cpu_seconds": f"about 2x without {norm_name}"}


ACTIVATION_STUDY = Study(
    "activations", "VGG-19 (3x3): activation functions, without and with BatchNorm or LRN",
    f"{SOURCE}, section VII c-d",
    tuple(_vgg(f"{name}{suffix}", "vgg19", {"kernel_size": 3, "norm": norm},
               f"{label}{norm_label}", _activation_report(name, suffix, short), activation)
          for norm, suffix, norm_label, short in NORMS
          for name, activation, label in ACTIVATIONS),
    SURVEY_SETTINGS, QUICK,
    columns=("test_acc", "train_loss", "params", "train_cpu_seconds"),
    notes="Without normalisation, most activations (Swish excepted) do worse than ReLU, CReLU "
          "most of all; adding a normalisation layer nearly doubles the time and raises the "
          "accuracy, most clearly for CReLU (which the survey puts down to internal covariate "
          "shift).")

# --------------------------------------------------------- experiment b: momentum vs Adam
# "alexnet, 300000 step, learning rate 0.005", same device and data set. minidl's ``alexnet``
# is the paper's single tower (width 96, FC-4096, dropout 0.5, LRN; at 32x32 its conv1 keeps
# the size). Not given: the momentum coefficient (0.9), the batch and split (as above: 625
# epochs of 480 steps are 300,000 steps), dropout (AlexNet's own 0.5); both optimisers at the
# same constant learning rate, He init as above. The same pair on the 3x3 VGG-19 of the other
# experiments (its width and dropout) shows whether the finding depends on the network.
OPTIMIZER_SETTINGS = BASE + ("--epochs", "625", "--lr", "5e-3")
NETWORKS = (("alexnet", ("alexnet", "--width", "96"), "AlexNet", ("--model-kwargs", "hidden=64")),
            ("vgg19", ("vgg19", *VGG_SETTINGS, "--model-kwargs", "kernel_size=3"),
             "VGG-19 3x3", ()))
# "Adam (red line) converges faster and more accurately with less vibration than momentum
# (blue line) ... the momentum algorithm was faster in convergence at the beginning." (The
# figure's caption says the opposite colours: "red line is momentum, blue line is Adam".)
OPTIMIZERS = (("momentum", "SGD, momentum 0.9",
               {"test_acc": "below Adam", "val_acc": "faster at the very start, oscillates"}),
              ("adam", "Adam (0.9, 0.999, 1e-8)",
               {"test_acc": "above momentum", "val_acc": "converges faster, less oscillation"}))

MOMENTUM_VS_ADAM = Study(
    "momentum-vs-adam", "SGD with momentum against Adam (AlexNet, and the 3x3 VGG-19)",
    f"{SOURCE}, section VII b",
    tuple(Run(f"{net}-{opt}", (*argv, "--optimizer", opt), f"{net_label}, {opt_label}",
              report if net == "alexnet" else {}, quick)
          for net, argv, net_label, quick in NETWORKS for opt, opt_label, report in OPTIMIZERS),
    OPTIMIZER_SETTINGS, QUICK,
    columns=("test_acc", "val_acc", "final_val_acc", "train_loss", "train_cpu_seconds"),
    notes="Adam converges faster and more accurately, with less oscillation than momentum "
          "(its second moment damps it); momentum is faster at the very beginning, while "
          "Adam's bias-corrected averages still carry little of the past gradients.")

STUDIES = (KERNEL_SIZES, ACTIVATION_STUDY, MOMENTUM_VS_ADAM)
