"""Seed 000: "Structure Composing Layer" (Chen, 2019 preprint): SfNet against VGG-16.

SfNet is VGG-16 (with BatchNorm, the preprint's Table 1) whose scales 4 and 5 are one
MixedSCLayer and two SCLayers each: a 3x3 max pool and a 1x1 convolution in place of a 3x3
convolution. Section 4.1 trains both "with the same hyperparameters, same training method and
same number of epochs" on CIFAR-10: horizontal flip only, one-cycle schedule (fastai, stepped
per batch), batch 128, 30 epochs, each model trained 10 times (Tables 2 and 3); Table 4 is
the per-epoch accuracy of one of those runs, where SfNet's "accuracy valley" shows.
"""
from __future__ import annotations

from ..study import Run, Study

SOURCE = "seed 000 (SCLayer preprint), section 4, Tables 2-4, Fig. 4"

# Section 4.1. Not given: the optimiser and its peak learning rate ("code is based on fastai
# library"): fastai's one-cycle default, Adam with a peak lr of 3e-3, is our choice (fastai
# also decays weights by 1e-2 AdamW-style, which minidl's Adam does not do: left out).
# The validation split (5 %) is ours: the preprint reports the accuracy on CIFAR-10's test set.
SETTINGS = ("--dataset", "cifar10", "--epochs", "30", "--batch-size", "128",
            "--optimizer", "adam", "--lr", "3e-3", "--schedule", "onecycle",
            "--schedule-step", "batch", "--augment", "flip", "--width", "64", "--seed", "0")
QUICK = ("--subset", "50", "--epochs", "1", "--batch-size", "50", "--width", "4",
         "--no-progress", "--no-plots")

SFNET_VS_VGG16 = Study(
    "sfnet-vs-vgg16", "SfNet (SCLayers in scales 4-5) against VGG-16 (Tables 2-4, Fig. 4)",
    SOURCE,
    # Table 3's averages over 10 trainings (on the preprint's cloud GPU, wall seconds) and
    # Table 2's accuracies; the time reduction is "TimeReduced_experiment", the uncorrected mean.
    (Run("vgg16", ("vgg16",), "VGG-16 with BatchNorm, FC-1024 head",
         {"test_acc": 0.9132, "train_cpu_seconds": 1550, "time_reduction": 0.0}),
     Run("sfnet", ("sfnet",), "SfNet: scales 4-5 as MixedSCLayer + 2 SCLayers",
         {"test_acc": 0.9150, "train_cpu_seconds": 1320, "time_reduction": 0.149})),
    SETTINGS, QUICK,
    columns=("params", "mult_adds", "train_cpu_seconds", "time_reduction", "test_acc",
             "val_acc", "final_val_acc"),
    repeats=10, baseline="vgg16",
    notes="SfNet trains 12.9-14.9 % faster than VGG-16 (1,320 s against 1,550 s on average over "
          "10 trainings) and is 0.18 points more accurate on CIFAR-10 (91.50 % against "
          "91.32 %), while its training loss stays a little higher. Its per-epoch accuracy "
          "falls sharply in the middle of training (from 0.78 at epoch 8 to 0.31 at epoch 21) "
          "while the training loss keeps falling, then recovers to 0.918: the 'accuracy "
          "valley'; VGG-16 shows a shallower one (0.61 at epoch 14). The preprint gives no "
          "parameter or mult-add counts, only that an SCLayer has 1/9 of a 3x3 "
          "convolution's parameters.")

STUDIES = (SFNET_VS_VGG16,)
