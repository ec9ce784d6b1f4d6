"""Report 004: "Neural Network and Deep Learning" project 2 (Fudan): ResNet-18 studies on
CIFAR-10, VGG-A with and without BatchNorm, the BN loss landscape, DessiLBI sparsity.

The report's figures are copied beside each run (``report=``); where it does not give a
setting (learning rate, batch size, epochs per table), the choice here is stated in a comment.
"""
from __future__ import annotations

from ..study import Run, Study

SOURCE = "seed 004 (Fudan NNDL project 2)"

# Section 1: CIFAR-10 split 10:1:1 (val 1/11 of the training images), ReLU, BatchNorm,
# width 64, weight decay 5e-4, SGD with momentum (the row shared by Tables 1-4: 91.38 %).
# Not given: learning rate, schedule, batch size, epochs per table ("32 epochs" is the best
# run's): lr 0.05 cosine-annealed to 0, batch 100, 32 epochs.
RESNET_SETTINGS = ("--dataset", "cifar10", "--val-fraction", "0.0909", "--epochs", "32",
                   "--batch-size", "100", "--optimizer", "momentum", "--lr", "0.05",
                   "--schedule", "cosine", "--min-lr", "0", "--weight-decay", "5e-4",
                   "--num-filters", "64", "--activation", "relu", "--seed", "0")
QUICK = ("--subset", "50", "--epochs", "1", "--batch-size", "50", "--num-filters", "2",
         "--no-progress")
BASELINE = {"test_acc": 0.913793, "test_loss": 0.2861}


def _resnet(name, options, label, report, quick=()):
    return Run(name, ("resnet18", *options), label, report, quick)


def _resnet_study(name, title, section, runs, notes):
    return Study(name, title, f"{SOURCE}, section {section}", tuple(runs), RESNET_SETTINGS, QUICK,
                 notes=notes)


RESNET18_WIDTH = _resnet_study(
    "resnet18-width", "ResNet-18: channel width (Table 1, Fig. 2)", "1.3",
    [_resnet(f"width-{w}", ("--num-filters", str(w)), f"first-stage channels {w}",
             {"test_acc": acc, "test_loss": loss, "train_seconds": secs},
             quick=("--num-filters", str(w // 16)))
     for w, acc, loss, secs in ((16, 0.877586, 0.3624, 787), (32, 0.897845, 0.3363, 966),
                                (64, 0.913793, 0.2861, 1132), (128, 0.927155, 0.2672, 1984))],
    "More filters give a lower loss and a higher accuracy on the training, validation and test "
    "sets, at a training time that grows with the width (787 s at 16 channels, 1,984 s at 128).")

RESNET18_WEIGHT_DECAY = _resnet_study(
    "resnet18-weight-decay", "ResNet-18: weight decay (Table 2, Fig. 3)", "1.3",
    [_resnet(f"wd-{wd}", ("--weight-decay", wd), f"L2 {wd}",
             {"test_acc": acc, "test_loss": loss, "train_seconds": secs})
     for wd, acc, loss, secs in (("0", 0.883189, 0.4015, 1120), ("1e-4", 0.888362, 0.3704, 1126),
                                 ("5e-4", 0.913793, 0.2861, 1132),
                                 ("1e-3", 0.889655, 0.3191, 1133))],
    "Too little or too much weight decay hurts: 5e-4 is best (91.38 %), 0 gives 88.32 %, "
    "1e-3 gives 88.97 %.")

RESNET18_ACTIVATION = _resnet_study(
    "resnet18-activation", "ResNet-18: activation function (Table 3, Fig. 4)", "1.3",
    [_resnet(name, ("--activation", act), act,
             {"test_acc": acc, "test_loss": loss, "train_seconds": secs})
     for name, act, acc, loss, secs in (
         ("sigmoid", "sigmoid", 0.682327, 0.8774, 1084), ("elu", "elu", 0.883189, 0.4015, 1839),
         ("leaky-relu", "leaky_relu", 0.909913, 0.2952, 1211),
         ("relu", "relu", 0.913793, 0.2861, 1246))],
    "Sigmoid is far behind (68.23 %: its saturated gradients), LeakyReLU is close to ReLU "
    "(90.99 % vs 91.38 %), ELU trains slower (1,839 s) and converges more slowly (88.32 %).")

# Section 1.4 changes only the optimiser; the report gives no per-optimiser learning rate, so
# every run keeps the shared lr 0.05 (which is what an adaptive method is most sensitive to).
RESNET18_OPTIMISER = _resnet_study(
    "resnet18-optimiser", "ResNet-18: optimiser (Table 4, Fig. 5)", "1.4",
    [_resnet(name, ("--optimizer", opt), label,
             {"test_acc": acc, "test_loss": loss, "train_seconds": secs})
     for name, opt, label, acc, loss, secs in (
         ("sgd", "sgd", "SGD", 0.922413, 0.2359, 1059),
         ("momentum", "momentum", "SGD with momentum 0.9", 0.913793, 0.2861, 1217),
         ("adagrad", "adagrad", "AdaGrad", 0.844396, 0.4729, 1202),
         ("adam", "adam", "Adam", 0.445258, 1.5449, 1431))],
    "SGD with and without momentum reach similar accuracy (92.24 % / 91.38 %; plain SGD's early "
    "loss fluctuates more); the adaptive methods fall behind: AdaGrad 84.44 %, Adam 44.53 %.")

FILTERS = Study(
    "filters", "ResNet-18: the first convolution's filters (Fig. 6)", f"{SOURCE}, section 1.5",
    (Run("resnet18", ("resnet18",), "the baseline ResNet-18", BASELINE, after=("filters",)),),
    RESNET_SETTINGS, QUICK, measure={"filter_layer": "stem.conv"},
    notes="The 3x3 RGB filters of the first layer, drawn as images, show different colour "
          "patterns and edge detectors; small (3x3) kernels show less salient features than "
          "AlexNet's 11x11 ones.")

# Section 2: VGG-A ("the detailed code is in VGG_train.py", not included): Adam lr 1e-3
# without a schedule, batch 128 and 20 epochs are assumptions, as is the 10:1:1 split.
VGG_SETTINGS = ("--dataset", "cifar10", "--val-fraction", "0.0909", "--epochs", "20",
                "--batch-size", "128", "--optimizer", "adam", "--lr", "1e-3",
                "--schedule", "constant", "--num-filters", "64", "--seed", "0")
VGG_QUICK = ("--subset", "50", "--epochs", "1", "--batch-size", "50", "--num-filters", "4",
             "--no-progress")

VGG_A_BN = Study(
    "vgg-a-bn", "VGG-A with and without BatchNorm (Table 5, Fig. 7)", f"{SOURCE}, section 2.1",
    (Run("vgg-a", ("vgg11",), "VGG-A", {"seconds_per_epoch": 7.26, "val_acc": 0.7658}),
     Run("vgg-a-bn", ("vgg11", "--bn"), "VGG-A with BatchNorm",
         {"seconds_per_epoch": 8.04, "val_acc": 0.8312})),
    VGG_SETTINGS, VGG_QUICK, columns=("seconds_per_epoch", "val_acc", "test_acc", "train_loss"),
    notes="BatchNorm slows an epoch a little (8.04 s vs 7.26 s on the report's GPU) and raises "
          "the validation accuracy a lot (83.12 % vs 76.58 %); the training loss falls faster.")

# Sections 2.2-2.4 (after Santurkar et al. 2018): one run per model and learning rate; at
# every step the gradient is probed at points moved along it by the same four step sizes.
LANDSCAPE_LRS = ("2e-3", "1e-3", "5e-4", "1e-4")
BN_LANDSCAPE = Study(
    "bn-landscape", "How BatchNorm helps optimisation: loss landscape, gradient predictiveness, "
    "effective beta-smoothness (Figs. 8-10)", f"{SOURCE}, sections 2.2-2.4",
    tuple(Run(f"{model}-lr{lr}", ("vgg11", *flags, "--lr", lr), f"{label}, lr {lr}",
              kind="landscape")
          for model, flags, label in (("vgg-a", (), "VGG-A"), ("vgg-a-bn", ("--bn",), "VGG-A-BN"))
          for lr in LANDSCAPE_LRS),
    VGG_SETTINGS, VGG_QUICK, columns=(),
    measure={"probe_sizes": tuple(float(lr) for lr in LANDSCAPE_LRS)},
    notes="With BatchNorm the band of losses over the learning rates is narrower (the loss "
          "changes less unstably); its gradient predictiveness is worse in the first steps, "
          "then better than without BN; its effective beta starts similar and falls lower as "
          "training proceeds (a smoother, flatter region).")

# Section 3: LeNet on MNIST with DessiLBI (Fu et al. 2020); pruning the last conv layer, then
# the last conv and the last (hidden) fully connected layer. Epochs, learning rates and the
# pruned fraction are not given: 20 epochs, DessiLBI lr 0.1 (kappa 1, mu 0.01, lam 0.1,
# momentum 0.9: minidl's defaults), Adam lr 1e-3, and the 80 % smallest-magnitude weights of
# each pruned layer removed.
SPARSITY = Study(
    "sparsity", "LeNet-5 with DessiLBI: structural sparsity and pruning (Table 6, Fig. 12)",
    f"{SOURCE}, section 3",
    (Run("dessilbi", ("lenet5", "--optimizer", "dessilbi", "--lr", "0.1"), "DessiLBI",
         {"test_acc": 0.9867, "pruned_conv_acc": 0.9363, "pruned_conv_fc_acc": 0.9253},
         after=("prune",)),
     Run("adam", ("lenet5", "--optimizer", "adam", "--lr", "1e-3"), "Adam", after=("prune",))),
    ("--dataset", "mnist", "--val-fraction", "0.05", "--epochs", "20", "--batch-size", "100",
     "--schedule", "constant", "--seed", "0"),
    ("--subset", "50", "--epochs", "1", "--batch-size", "50", "--no-progress"),
    columns=("test_acc", "pruned_conv_acc", "pruned_conv_fc_acc", "gamma_zero_filters"),
    measure={"prune_fraction": 0.8, "prune_conv": "features.conv3", "prune_fc": "classifier.fc1"},
    notes="DessiLBI reaches 98.67 % on MNIST with a small train-test gap (its regularisation); "
          "its last conv layer is visibly sparse, and pruning it costs some accuracy (93.63 %), "
          "pruning the last FC layer too a little more (92.53 %).")

STUDIES = (RESNET18_WIDTH, RESNET18_WEIGHT_DECAY, RESNET18_ACTIVATION, RESNET18_OPTIMISER,
           FILTERS, VGG_A_BN, BN_LANDSCAPE, SPARSITY)
