"""Report 003: the Edinburgh MLP coursework 2 report ("Investigating the Implementation and
Optimization of Convolutional Networks", sections 3-5): the experiment ladder as one study.

vgg08, the broken vgg38, vgg38 with BatchNorm, with residual connections, with both (the
baseline), then random erasing, L2 and dropout added one at a time on top of the baseline.
"""
from __future__ import annotations

from ..study import Run, Study

REPORT_DATASET = "cifar100"
REPORT_EPOCHS = 100

# Section 5: 47,500 / 2,500 / 10,000 split (5 % held out), batch 100, seed 0, 100 epochs, Adam
# lr 1e-3 cosine-annealed to 2e-5, 32 filters in the first stage. Spelt out even where they
# equal minidl.train's defaults, so the study does not drift if those defaults change.
REPORT_SETTINGS = ("--dataset", REPORT_DATASET, "--val-fraction", "0.05", "--batch-size", "100",
                   "--seed", "0", "--epochs", str(REPORT_EPOCHS), "--optimizer", "adam",
                   "--lr", "1e-3", "--schedule", "cosine", "--min-lr", "2e-5",
                   "--num-filters", "32")
QUICK = ("--subset", "50", "--epochs", "1", "--batch-size", "50", "--num-filters", "2",
         "--num-blocks-per-stage", "1", "--no-progress")

BASELINE = ("vgg38", "--bn", "--residual")
# Random erasing p 0.5, area (0.02, 0.33), aspect (0.3, 3.3) (section 5.2.1): minidl's defaults.
ERASING = BASELINE + ("--random-erasing",)
# Section 5.3: "The penalty coefficient we will use is p = 0.001" (added to the gradient by Adam).
L2 = ERASING + ("--weight-decay", "1e-3")


def _rung(name, argv, label, val=None, test=None):
    report = {k: v for k, v in (("val_acc", val), ("test_acc", test)) if v is not None}
    return Run(name, argv, label, report)


CW2 = Study(
    "cw2", "MLP coursework 2: the experiment ladder", "seed 003 (Edinburgh MLP cw2), sections 3-5",
    (_rung("vgg08", ("vgg08",), "shallow reference: 7 convs + 1 linear", 0.4848),
     _rung("vgg38", ("vgg38",), "broken: gradients vanish (the report: 'converges around 0')"),
     _rung("vgg38-bn", ("vgg38", "--bn"), "fix 1: BatchNorm after every conv", 0.4616),
     _rung("vgg38-res", ("vgg38", "--residual"), "fix 2: residual connections", 0.5728),
     _rung("vgg38-bn-res", BASELINE, "both fixes: the baseline", 0.6212, 0.6112),
     _rung("vgg38-bn-res-re", ERASING, "+ random erasing (p 0.5)", 0.6431),
     _rung("vgg38-bn-res-re-l2", L2, "+ L2 1e-3: the report's final model", 0.6589, 0.6541),
     _rung("vgg38-bn-res-re-l2-drop", L2 + ("--dropout", "0.5"),
           "+ dropout 0.5 before the classifier (the report keeps it out)", 0.6524)),
    REPORT_SETTINGS, QUICK, columns=("val_acc", "final_val_acc", "test_acc", "train_seconds"),
    notes="The plain 38-layer network does not train (vanishing gradients); BatchNorm or "
          "residual connections each fix it, both together are best (62.12 % validation, "
          "61.12 % test on CIFAR-100 after 100 epochs); random erasing and L2 1e-3 add about "
          "2 and 1.5 points; dropout before the classifier does not help.")

STUDIES = (CW2,)
