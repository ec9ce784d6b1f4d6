"""A --quick study sent through a local Ray instance (loopback only) gives the serial results."""
import json

import pytest

from coursework import runner, studies
from coursework.__main__ import main
from minidl._threads import blas_threads
from minidl.metrics import METRIC_COLUMNS, CSVLog
from minidl.train import EXIT_OK
from tests.fake_data import write_fake_fashion_mnist

ray = pytest.importorskip("ray")
STUDY = "vgg-a-bn"  # two independent runs: two tasks at once
# Wall and CPU times differ between the serial and the Ray run; everything else must not.
TIMINGS = ("seconds", "cpu_seconds", "train_seconds", "train_cpu_seconds")


@pytest.fixture
def data_dir(tmp_path):
    """Fashion-MNIST's four IDX gz files holding random 28x28 images and labels."""
    return write_fake_fashion_mnist(tmp_path)


def quick_args(data_dir, out_root):
    return ["--quick", "--dataset", "fashion_mnist", "--data-dir", str(data_dir),
            "--out-root", str(out_root)]


@pytest.fixture
def local_ray():
    """A fresh Ray on this machine: 2 CPUs, no dashboard, stopped afterwards."""
    # The workers' BLAS runs on as many threads as this process's: a float32 GEMM split over
    # another thread count may round differently, and the results are compared bit for bit.
    threads = str(blas_threads())
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": threads}})
    yield
    ray.shutdown()


def _results(out_root, study=STUDY, names=None):
    """Per run: the metrics without timings, and the test summary without timings."""
    found = {}
    for run in studies.get(study).runs:
        if names is not None and run.name not in names:
            continue
        folder = out_root / study / run.name
        rows = CSVLog(folder / "metrics.csv", METRIC_COLUMNS).read()
        summary = json.loads((folder / "test_summary.json").read_text())
        found[run.name] = ([{k: v for k, v in r.items() if k not in TIMINGS} for r in rows],
                           {k: v for k, v in summary.items() if k not in TIMINGS})
    return found


def test_ray_study_equals_the_serial_one(data_dir, tmp_path, local_ray):
    serial, distributed = tmp_path / "serial", tmp_path / "ray"
    assert main(["run", STUDY, *quick_args(data_dir, serial)]) == EXIT_OK
    assert main(["run", STUDY, *quick_args(data_dir, distributed), "--ray", "local"]) == EXIT_OK
    assert _results(distributed) == _results(serial)
    for run in studies.get(STUDY).runs:
        assert (distributed / STUDY / run.name / runner.DONE_FILE).is_file()
    # finished runs are not sent again
    assert main(["run", STUDY, *quick_args(data_dir, distributed), "--ray", "local"]) == EXIT_OK


def test_a_run_that_needs_another_waits_for_it_on_ray(data_dir, tmp_path, local_ray):
    """distillation's student names its teacher's folder: its task starts when the teacher's
    has finished, and trains as the serial study does."""
    serial, distributed = tmp_path / "serial", tmp_path / "ray"
    args = ["run", "distillation", "distilled"]
    assert main([*args, *quick_args(data_dir, serial)]) == EXIT_OK
    assert main([*args, *quick_args(data_dir, distributed), "--ray", "local"]) == EXIT_OK
    both = ("teacher", "distilled")
    assert _results(distributed, "distillation", both) == _results(serial, "distillation", both)
    config = json.loads((distributed / "distillation" / "distilled" / "config.json").read_text())
    assert config["teacher"] == str(distributed / "distillation" / "teacher")
