"""Seed 002: "How to design efficient deep convolutional architectures" (slides): pooling
against strided convolution (SimpNet's Table VI, AlexNet's overlapping pooling, NiN's global
average pooling), MobileNet's depthwise-separable convolution and width multiplier (Tables 4
and 6), and knowledge distillation ("Dark knowledge", Hinton et al.'s MNIST experiment).

The slides' figures are copied beside each run; where they give a finding without a number,
the finding is quoted as words. Settings the slides do not give are ours, said in a comment.
"""
from __future__ import annotations

from ..study import Run, Study

SOURCE = "seed 002 (efficient-architecture slides)"

# --------------------------------------------------------------------- pooling vs stride
# Table VI compares max pooling (*) with strided convolution (†) in SimpNet (CIFAR-100) and
# ResNet-32 (CIFAR-10). Our two architectures: vgg16 (13 convolutions, the depth of SimpNet's
# 13-layer row, with the SfNet preprint's FC head; width 64) and resnet32 (He et al.'s CIFAR
# ResNet, 0.47 M parameters like the table's 460 K; width 16; its own down-sampling is a
# stride-2 convolution). Not given (SimpNet trains with its own recipe): CIFAR-10 for all
# rows, Adam lr 1e-3 cosine, batch 128, crop + flip, 50 epochs.
POOL_SETTINGS = ("--dataset", "cifar10", "--epochs", "50", "--batch-size", "128",
                 "--optimizer", "adam", "--lr", "1e-3", "--schedule", "cosine",
                 "--augment", "crop,flip", "--seed", "0")
POOL_QUICK = ("--subset", "50", "--epochs", "1", "--batch-size", "50", "--width", "4",
              "--no-progress", "--no-plots")


def _kwargs(*pairs) -> tuple:
    return ("--model-kwargs", *pairs)


VGG16 = ("vgg16", "--width", "64")
RESNET32 = ("resnet32", "--width", "16")

POOL_VS_STRIDE = Study(
    "pool-vs-stride", "Down-sampling: max pooling against strided convolution (Table VI), "
    "overlapping pooling, global average pooling", f"{SOURCE}, 'Strided convolution vs "
    "Maxpooling' (Table VI), AlexNet, Network in Network",
    (Run("vgg-max", (*VGG16, *_kwargs("downsample=max")), "vgg16, 2x2 max pool",
         {"test_acc": "69.28 % (SimpNet* 13 layers), 68.89 % (15)"}),
     Run("vgg-stride", (*VGG16, *_kwargs("downsample=stride")),
         "vgg16, stride-2 convolution instead of the pool",
         {"test_acc": "68.10 % (SimpNet† 15 layers)"}),
     Run("vgg-max-overlap", (*VGG16, *_kwargs("downsample=max_overlap")),
         "vgg16, overlapping 3x3 max pool, stride 2",
         {"test_acc": "better than 2x2 (AlexNet)", "train_loss": "harder to overfit"}),
     Run("vgg-gap", (*VGG16, *_kwargs("downsample=max", "head=gap")),
         "vgg16, global average pool + one linear layer instead of the FC layers",
         {"test_acc": "less overfitting, better generalisation (NiN)"}),
     Run("resnet-max", (*RESNET32, *_kwargs("downsample=max")),
         "resnet32, max pool down-sampling", {"test_acc": 0.9375}),
     Run("resnet-stride", (*RESNET32, *_kwargs("downsample=stride")),
         "resnet32, stride-2 convolution (its own)", {"test_acc": 0.9346})),
    POOL_SETTINGS, POOL_QUICK,
    columns=("test_acc", "val_acc", "train_acc", "train_loss", "params", "mult_adds",
             "train_cpu_seconds"),
    notes="Max pooling beats strided convolution in both architectures (SimpNet 68.89 % "
          "against 68.10 % at 15 layers on CIFAR-100, ResNet-32 93.75 % against 93.46 % on "
          "CIFAR-10, same parameters): 'a conv by itself cannot learn what pooling does'. "
          "Overlapping max pooling (AlexNet) performs better and makes the network harder to "
          "overfit; global average pooling instead of FC layers (NiN) overfits less and "
          "generalises better.")

# --------------------------------------------------------------------- depthwise
# MobileNet's Tables 4 and 6 are on ImageNet at 224x224 with 1,000 classes. Here: the same
# network at the data set's own 28x28 (stem stride 1, so the last maps are 2x2), 10 classes.
# Not given for ImageNet-free training: Adam lr 1e-3 cosine, batch 128, 30 epochs.
DEPTHWISE_SETTINGS = ("--dataset", "fashion_mnist", "--epochs", "30", "--batch-size", "128",
                      "--optimizer", "adam", "--lr", "1e-3", "--schedule", "cosine",
                      "--seed", "0")
DEPTHWISE_QUICK = ("--subset", "50", "--epochs", "1", "--batch-size", "50", "--no-progress", "--no-plots")
M = 1_000_000


def _mobilenet(name, alpha, separable, label, acc, mult_adds, params):
    argv = ("mobilenet", "--width-mult", alpha) + (() if separable else ("--no-separable",))
    return Run(name, argv, label,
               {"test_acc": acc, "mult_adds": mult_adds * M, "params": params * M},
               # --quick: a narrow network whatever the run's alpha (their order is kept)
               quick=("--width-mult", str(float(alpha) / 8)))


DEPTHWISE = Study(
    "depthwise", "MobileNet: depthwise-separable against full convolution, width multiplier "
    "(Tables 4 and 6)", f"{SOURCE}, MobileNet, Tables 4 and 6",
    (_mobilenet("separable-1.0", "1.0", True, "MobileNet 1.0 (depthwise separable)",
                0.706, 569, 4.2),
     _mobilenet("full-1.0", "1.0", False, "Conv MobileNet 1.0 (full 3x3 convolutions)",
                0.717, 4866, 29.3),
     _mobilenet("separable-0.75", "0.75", True, "MobileNet 0.75", 0.684, 325, 2.6),
     _mobilenet("separable-0.5", "0.5", True, "MobileNet 0.5", 0.637, 149, 1.3),
     _mobilenet("separable-0.25", "0.25", True, "MobileNet 0.25", 0.506, 41, 0.5)),
    DEPTHWISE_SETTINGS, DEPTHWISE_QUICK,
    columns=("test_acc", "train_acc", "mult_adds", "params", "cpu_seconds_per_epoch"),
    notes="Depthwise-separable convolutions cost 1 % of ImageNet accuracy (70.6 % against "
          "71.7 %) for 8.6x fewer mult-adds (569 M against 4,866 M) and 7x fewer parameters "
          "(4.2 M against 29.3 M). The width multiplier trades accuracy smoothly for cost "
          "(roughly alpha^2 in mult-adds and parameters) until 0.25, where accuracy drops "
          "sharply (70.6 / 68.4 / 63.7 / 50.6 % at 1.0 / 0.75 / 0.5 / 0.25). Parameters there "
          "count a 1,000-class classifier (1 M of the 4.2 M).")

# --------------------------------------------------------------------- distillation
# "Experiment on MNIST" (Hinton, Vinyals and Dean, 2015, as the slides tell it): a 784-800-800-10
# ReLU net trained alone; a 784-1200-1200-10 teacher with dropout and jittered inputs; the small
# net trained on the teacher's soft targets plus the hard targets, without dropout or jitter;
# and the small net distilled on a transfer set without any 3, its 3-bias raised afterwards.
# The slides' "weight constraints" (max-norm) are not in minidl: left out. Not given: the
# optimiser and length (Adam lr 1e-3 cosine, batch 100, 60 epochs), the dropout rates (0.5 on
# hidden units, 0.2 on the inputs: Hinton et al. 2012's), T = 20 (the paper's for this net)
# and the soft term's weight 0.9 (minidl.train's default: the hard term down-weighted).
DISTILL_SETTINGS = ("--dataset", "mnist", "--epochs", "60", "--batch-size", "100",
                    "--optimizer", "adam", "--lr", "1e-3", "--schedule", "cosine",
                    "--min-lr", "2e-5", "--seed", "0")
# --quick: half held out, so the few validation images still hold the excluded class.
DISTILL_QUICK = ("--subset", "50", "--val-fraction", "0.5", "--epochs", "1", "--batch-size",
                 "50", "--no-progress", "--no-plots")
STUDENT = ("mlp", "--model-kwargs", "hidden=(800,800)")
DISTILLED = STUDENT + ("--teacher", "{run:teacher}", "--temperature", "20",
                       "--soft-weight", "0.9")
EXCLUDED = 3

DISTILLATION = Study(
    "distillation", "Knowledge distillation: an MLP teacher, its student alone and distilled, "
    "a transfer set without one class", f"{SOURCE}, 'Dark knowledge / knowledge distillation', "
    "Experiment on MNIST",
    (Run("teacher", ("mlp", "--model-kwargs", "hidden=(1200,1200)", "dropout=0.5",
                     "input_dropout=0.2", "--augment", "jitter"),
         "784-1200-1200-10, dropout, jittered inputs", {"test_errors": 67}),
     Run("student", STUDENT, "784-800-800-10 alone (vanilla backprop)", {"test_errors": 146}),
     Run("distilled", DISTILLED, "784-800-800-10 on soft (T = 20) + hard targets",
         {"test_errors": 74}),
     Run(f"distilled-without-{EXCLUDED}", DISTILLED + ("--exclude-class", str(EXCLUDED)),
         f"distilled on a transfer set without class {EXCLUDED}, then its bias raised",
         {"class_test_acc_corrected": 0.986}, after=("bias_correction",))),
    DISTILL_SETTINGS, DISTILL_QUICK,
    columns=("test_errors", "test_acc", "test_errors_corrected", "class_test_acc",
             "class_test_acc_corrected", "bias_shift", "params", "train_cpu_seconds"),
    notes="Vanilla backprop in the 784-800-800-10 net gives 146 test errors on MNIST; the "
          "784-1200-1200-10 net with dropout, weight constraints and jittered inputs 67; the "
          "small net trained on the big net's soft targets and the hard targets 74 (same "
          "training set, no dropout, no jitter): the soft targets carry almost all the "
          "knowledge. Trained on a transfer set without a single 3, and its 3-bias raised "
          "by the right amount afterwards, the distilled net gets 98.6 % of the test 3s right.")

STUDIES = (POOL_VS_STRIDE, DEPTHWISE, DISTILLATION)
