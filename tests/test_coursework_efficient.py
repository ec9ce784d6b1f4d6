"""The coursework infrastructure issue 11 added: repeated runs (mean ± sd), runs that need
another run's folder, cost columns (parameters, mult-adds, CPU seconds), the bias-correction
after-step, and report cells given as words."""
import json

import numpy as np
import pytest

from coursework import report, runner, studies
from coursework.__main__ import main
from coursework.study import Run, Study
from minidl import models
from minidl.config import parse_config
from minidl.summary import summary
from minidl.train import EXIT_OK, EXIT_USAGE
from tests.fake_data import write_fake_fashion_mnist


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Fashion-MNIST's four IDX gz files holding random 28x28 images and labels."""
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fashion"))


def _study(**kwargs):
    runs = (Run("teacher", ("lenet5",), "the teacher"),
            Run("student", ("lenet5", "--lr", "1e-2", "--out-of", "{run:teacher}"), "its student"),
            Run("alone", ("lenet5",), "no teacher"))
    return Study("s", "t", "src", runs, ("--epochs", "3"), ("--subset", "50"), **kwargs)


# ---------------------------------------------------------------------- repeats
def test_repeats_plan_one_folder_and_seed_per_repeat(tmp_path):
    study = Study("s", "t", "src", (Run("a", ("lenet5",), "a"), Run("b", ("lenet5",), "b")),
                  ("--seed", "7"), repeats=3)
    items = runner.plan(study, tmp_path)
    assert [i.name for i in items] == ["a", "b", "a-seed1", "b-seed1", "a-seed2", "b-seed2"]
    assert [parse_config(list(i.argv)).seed for i in items] == [0, 0, 1, 1, 2, 2]
    assert [i.repeat for i in items] == [0, 0, 1, 1, 2, 2]
    # --quick repeats a repeated study twice; --repeats wins over both
    assert len(runner.plan(study, tmp_path, quick=True)) == 2 * runner.QUICK_REPEATS
    assert [i.name for i in runner.plan(study, tmp_path, ["b"], repeats=1)] == ["b"]
    # one repeat keeps the study's own seed and the unrepeated folder
    (single,) = runner.plan(study, tmp_path, ["a"], repeats=1)
    assert parse_config(list(single.argv)).seed == 7 and single.folder == tmp_path / "s" / "a"
    with pytest.raises(ValueError, match="--repeats must be >= 1"):
        runner.plan(study, tmp_path, repeats=0)


def test_repeats_on_the_command_line(capsys):
    assert main(["list", "vgg-a-bn", "--repeats", "2"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "# vgg-a-seed1:" in out and "--seed 1 --out runs/coursework/vgg-a-bn/vgg-a-seed1" in out
    assert main(["run", "vgg-a-bn", "--repeats", "0"]) == EXIT_USAGE
    assert "--repeats must be >= 1, got 0" in capsys.readouterr().err


# ---------------------------------------------------------------------- dependencies
def test_a_run_gets_the_folder_of_the_run_it_needs(tmp_path):
    study = _study(repeats=2)
    assert study.run("student").needs == ("teacher",)
    items = runner.plan(study, tmp_path, ["student"])  # the teacher comes along, first
    assert [i.name for i in items] == ["teacher", "student", "teacher-seed1", "student-seed1"]
    student = items[3]
    assert student.argv[student.argv.index("--out-of") + 1] == str(tmp_path / "s" /
                                                                   "teacher-seed1")
    assert student.needs == (tmp_path / "s" / "teacher-seed1",)
    assert [r.name for r in study.ordered(["alone", "student"])] == ["alone", "teacher",
                                                                    "student"]


def test_bad_dependencies_are_refused():
    with pytest.raises(ValueError, match="names its own folder"):
        Run("a", ("lenet5", "--x", "{run:a}"), "a")
    with pytest.raises(ValueError, match=r"needs the folder of \['ghost'\]"):
        Study("s", "t", "src", (Run("a", ("lenet5", "{run:ghost}"), "a"),))
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        Study("s", "t", "src", (Run("a", ("lenet5", "{run:b}"), "a"),
                                Run("b", ("lenet5", "{run:a}"), "b")))
    with pytest.raises(ValueError, match="baseline 'c' is not one of its runs"):
        Study("s", "t", "src", (Run("a", ("lenet5",), "a"),), baseline="c")
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        Study("s", "t", "src", (Run("a", ("lenet5",), "a"),), repeats=0)


def test_a_run_after_a_diverged_one_is_skipped(tmp_path, monkeypatch):
    items = runner.plan(_study(), tmp_path)
    ran = []

    def fake_execute(item, measure, log, head):
        ran.append(item.name)
        return runner.train.EXIT_DIVERGED if item.name == "teacher" else EXIT_OK

    monkeypatch.setattr(runner, "execute", fake_execute)
    lines = []
    assert runner.run_serial(items, {}, lines.append) == runner.train.EXIT_DIVERGED
    assert ran == ["teacher", "alone"]
    assert any("student: skipped, it needs teacher, which diverged" in line for line in lines)


# ---------------------------------------------------------------------- bias correction
def test_best_shift_maximises_accuracy_in_the_interval_nearest_zero():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((300, 5))
    y = rng.integers(0, 5, 300)
    logits[:, 2] -= 3.0  # class 2 is hardly ever predicted, as after training without it
    shift = runner.best_shift(logits, y, 2)

    def accuracy(s):
        z = logits.copy()
        z[:, 2] += s
        return np.mean(z.argmax(axis=1) == y)

    grid = np.linspace(-2, 8, 4001)
    best = max(accuracy(s) for s in grid)
    assert accuracy(shift) == pytest.approx(best)
    assert accuracy(shift) > accuracy(0.0)
    # no best interval lies closer to zero: walking from the shift towards 0, once the
    # accuracy falls below the best it never comes back
    towards_zero = [accuracy(s) == best for s in sorted(grid[np.abs(grid) < abs(shift)] *
                                                        np.sign(shift), reverse=True)]
    first_drop = towards_zero.index(False) if False in towards_zero else len(towards_zero)
    assert not any(towards_zero[first_drop:])


def test_best_shift_of_a_separable_case():
    # class 0 scores 1 below the rival on its own examples and 3 below on the others: any shift
    # in (1, 3) makes every example right; the midpoint 2 is the interval's.
    logits = np.array([[0.0, 1.0], [0.0, 1.0], [-2.0, 1.0]])
    y = np.array([0, 0, 1])
    assert runner.best_shift(logits, y, 0) == pytest.approx(2.0)


def test_output_layer_is_the_last_classifier_with_a_bias():
    model = models.build("lenet5", in_channels=1, num_classes=10)
    layer = runner.output_layer(model, 10)
    assert layer.out_features == 10 and layer is [m for _, m in model.named_layers()
                                                  if getattr(m, "out_features", 0) == 10][-1]
    with pytest.raises(ValueError, match="no Linear layer with 7 outputs"):
        runner.output_layer(model, 7)


# ---------------------------------------------------------------------- the report
def _fake_run(folder, seconds, accs, cpu=None, model="lenet5", extra=None, finished=True):
    """A run folder as minidl.train leaves it: config.json, metrics.csv, test_summary.json
    (not yet when not ``finished``)."""
    folder.mkdir(parents=True)
    cfg = parse_config([model, "--out", str(folder), *(extra or [])])
    cfg.save_json(folder / "config.json")
    columns = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"] + \
        (["cpu_seconds"] if cpu is not None else [])
    lines = [",".join(columns)]
    for epoch, (s, a) in enumerate(zip(seconds, accs), start=1):
        row = [epoch, 1e-3, 1.0, 0.5, 1.0, a, s] + ([cpu[epoch - 1]] if cpu is not None else [])
        lines.append(",".join(map(str, row)))
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    if finished:
        (folder / "test_summary.json").write_text(json.dumps(
            {"test_acc": accs[-1], "test_loss": 1.0, "test_examples": 1000}))


def test_report_gives_mean_sd_cost_cpu_time_and_time_reduction(tmp_path):
    study = Study("s", "t", "src",
                  (Run("base", ("lenet5",), "baseline", {"test_acc": "words, as the document"}),
                   Run("cheap", ("lenet5", "--pool", "avg"), "cheaper", {"train_cpu_seconds": 9})),
                  columns=("test_acc", "test_errors", "params", "mult_adds",
                           "train_cpu_seconds", "time_reduction"),
                  baseline="base")
    root = tmp_path / "runs" / "s"
    _fake_run(root / "base", [10, 10], [0.5, 0.80], cpu=[20, 20])
    _fake_run(root / "base-seed1", [10, 10], [0.5, 0.90], cpu=[30, 30])
    _fake_run(root / "base-seed2", [10], [0.1], cpu=[5], finished=False)  # still training
    _fake_run(root / "cheap", [5, 5], [0.5, 0.70], extra=["--pool", "avg"])  # no CPU time
    found = report.write_report(study, tmp_path / "runs", tmp_path / "results")
    base, cheap = found
    assert base["repeats"] == 2 and cheap["repeats"] == 1
    assert base["metrics"]["test_acc"] == pytest.approx(0.85)
    assert base["sd"]["test_acc"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert base["metrics"]["train_cpu_seconds"] == pytest.approx(50)  # mean of 40 and 60
    assert base["metrics"]["test_errors"] == pytest.approx(150)       # mean of 200 and 100
    assert cheap["metrics"]["train_cpu_seconds"] == 10 and not cheap["metrics"]["cpu_time_recorded"]
    assert cheap["metrics"]["time_reduction"] == pytest.approx(1 - 10 / 50)
    cost = summary(models.build("lenet5", in_channels=1, num_classes=10), (1, 28, 28))
    assert base["metrics"]["params"] == cost.params
    assert base["metrics"]["mult_adds"] == cost.mult_adds
    readme = (tmp_path / "results" / "README.md").read_text()
    assert "| base (baseline) | fashion_mnist | 2 | 2 | 85.00% ± 7.07 | words, as the document |" \
        in readme
    assert f"{cost.params:,}" in readme and "10.0 (wall)" in readme and "80.00%" in readme
    assert "seeds 0, 1, ..." in readme and "1 - time / time of `base`" in readme
    for name in ("base", "base-seed1", "cheap"):  # every repeat's small files are kept
        assert (tmp_path / "results" / f"{name}-metrics.csv").is_file()
    assert json.loads((tmp_path / "results" / "summary.json").read_text())["base"]["repeats"] == 2


def test_the_width_column_reads_width_and_narrow_divides_it():
    assert runner.narrowed(["vgg16", "--width", "64", "--lr", "1"], 4) == \
        ["vgg16", "--width", "16", "--lr", "1"]


# ---------------------------------------------------------------------- the studies
def test_issue_11_studies_carry_the_documents_figures():
    sf = studies.get("sfnet-vs-vgg16")
    assert sf.repeats == 10 and sf.baseline == "vgg16"
    assert sf.run("sfnet").report == {"test_acc": 0.9150, "train_cpu_seconds": 1320,
                                      "time_reduction": 0.149}
    cfg = parse_config(sf.train_argv(sf.run("sfnet")))
    assert (cfg.batch_size, cfg.epochs, cfg.schedule, cfg.augment) == (128, 30, "onecycle",
                                                                       ("flip",))
    depthwise = studies.get("depthwise")
    assert depthwise.run("full-1.0").report == {"test_acc": 0.717, "mult_adds": 4866e6,
                                                "params": 29.3e6}
    assert [parse_config(depthwise.train_argv(r)).width_mult for r in depthwise.runs] == \
        [1.0, 1.0, 0.75, 0.5, 0.25]
    pools = studies.get("pool-vs-stride")
    assert {parse_config(pools.train_argv(r)).model_kwargs.get("downsample")
            for r in pools.runs} == {"max", "stride", "max_overlap"}


def _quick_plan(study, root, names, data_dir):
    return runner.plan(study, root, names, quick=True,
                       overrides=["--dataset", "fashion_mnist", "--data-dir", str(data_dir)])


def test_a_task_without_the_shared_folder_gets_the_teacher_it_needs(data_dir, tmp_path):
    """The Ray path on machines that do not share the run folders: the teacher's task sends
    its best checkpoint back with its small files, the student's task trains from them."""
    study = studies.get("distillation")
    teacher, student = _quick_plan(study, tmp_path / "nowhere", ["distilled"], data_dir)
    assert student.needs == (teacher.folder,)
    code, files = runner.ray_task(teacher, study.measure, True)
    assert code == EXIT_OK
    assert sorted(n for n in files if n.startswith("checkpoints")) == \
        sorted(runner.NEEDED_CHECKPOINTS)
    result = runner.ray_task(student, study.measure, False, (code, files))
    assert result[0] == EXIT_OK and not student.folder.exists()
    config = json.loads(result[1]["config.json"])
    assert config["teacher"] == str(teacher.folder) and config["out"] == str(student.folder)
    assert not any(name.startswith("checkpoints") for name in result[1])
    # a student whose teacher failed is not trained
    assert runner.ray_task(student, study.measure, False, (runner.train.EXIT_DIVERGED, None)) \
        == (runner.train.EXIT_DIVERGED, None)


def test_bias_correction_raises_the_excluded_class_bias(data_dir, tmp_path):
    study = studies.get("distillation")
    items = _quick_plan(study, tmp_path, ["distilled-without-3"], data_dir)
    assert runner.run_serial(items, study.measure) == EXIT_OK
    folder = items[-1].folder
    bias = json.loads((folder / "bias_correction.json").read_text())
    assert bias["class"] == 3 and bias["val_acc_after"] >= bias["val_acc_before"]
    # the model's own test accuracy after the raise agrees with the shifted logits
    assert bias["test_errors_after"] == round((1 - bias["test_acc_after"]) * bias["test_examples"])
    # raising class 3's logit only turns predictions into 3s (lowering it, away from 3s)
    change = bias["class_test_acc_after"] - bias["class_test_acc_before"]
    assert change * np.sign(bias["shift"]) >= 0
