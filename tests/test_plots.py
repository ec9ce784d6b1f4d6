"""Training plots: PNG files with data, including edge cases (zeros on a log axis, no rows)."""
import numpy as np

from minidl.plots import plot_curves, plot_gradient_flow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    return path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def test_curves_png(tmp_path):
    rows = [{"epoch": e, "lr": 1e-3, "train_loss": 2 / e, "train_acc": 1 - 1 / (e + 1),
             "val_loss": 2.2 / e, "val_acc": 0.9 - 1 / (e + 1), "seconds": 1.0}
            for e in range(1, 6)]
    assert _is_png(plot_curves(rows, tmp_path / "curves.png", title="vgg08"))


def test_gradient_flow_png_with_vanishing_and_zero_gradients(tmp_path):
    # vgg38-like: gradients shrink by orders of magnitude towards the input, one exactly zero.
    rows = [{"epoch": e, "depth": d, "layer": f"features.{d}.weight",
             "mean_abs_grad": 0.0 if d == 0 else 10.0 ** (d / 4 - 9)}
            for e in (1, 2, 3) for d in range(38)]
    path = plot_gradient_flow(rows, tmp_path / "gradient_flow.png", title="vgg38")
    assert _is_png(path)


def test_gradient_flow_png_without_rows(tmp_path):
    assert _is_png(plot_gradient_flow([], tmp_path / "empty.png"))


def test_plots_do_not_switch_the_global_backend(tmp_path):
    import matplotlib  # noqa: PLC0415
    before = matplotlib.get_backend()
    plot_curves([{"epoch": 1, "train_loss": 1.0, "val_loss": np.nan, "train_acc": 0.5,
                  "val_acc": np.nan}], tmp_path / "c.png")
    assert matplotlib.get_backend() == before
