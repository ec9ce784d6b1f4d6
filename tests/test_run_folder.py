"""RunFolder: a foreign folder is refused, one run at a time (stale locks recognised), latest and
best consistent at every crash point, temp files of killed writes cleaned, damage reported."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minidl import checkpoint
from minidl.checkpoint import RunFolder, RunFolderError, load_checkpoint


def _state(epoch, best_epoch):
    return {"model": {"w": np.full(3, float(epoch))}, "epoch": epoch, "best_epoch": best_epoch}


def _epochs(run):
    """(latest epoch, latest's best_epoch, epoch of the model in best.npz or None)."""
    latest = load_checkpoint(run.latest_path)
    best = run.load_best()
    return latest["epoch"], latest["best_epoch"], None if best is None else best["epoch"]


# ---------------------------------------------------------------------- which folders
def test_a_new_folder_is_created_and_an_empty_one_accepted(tmp_path):
    with RunFolder(tmp_path / "a" / "b") as run:
        run.write_config({"model": "m", "epochs": 1})
    assert run.is_run_folder()
    (tmp_path / "empty").mkdir()
    with RunFolder(tmp_path / "empty") as run:
        assert run.locked


def test_a_refused_run_leaves_nothing_behind(tmp_path):
    with RunFolder(tmp_path / "new" / "run"):
        pass                                   # nothing written: e.g. a bad model option
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_run_is_refused_untouched(tmp_path):
    (tmp_path / "thesis.tex").write_text("a week of work")
    (tmp_path / "metrics.csv").write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RunFolderError, match="not a minidl run folder.*metrics.csv, thesis.tex"):
        RunFolder(tmp_path).open()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "metrics.csv").read_text() == "mine"


def test_a_foreign_config_json_is_not_a_run(tmp_path):
    (tmp_path / "config.json").write_text('{"learning_rate": 3}')
    with pytest.raises(RunFolderError, match="not a minidl run folder"):
        RunFolder(tmp_path).open()


def test_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        RunFolder(tmp_path / "f").open()


def test_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert RunFolder("~/runs/x").path == tmp_path / "runs" / "x"


# ---------------------------------------------------------------------- the lock
def test_a_second_run_is_refused_naming_the_first(tmp_path):
    with RunFolder(tmp_path / "run"):
        with pytest.raises(RunFolderError, match=rf"in use by another run \(pid {os.getpid()} "):
            RunFolder(tmp_path / "run").open()
    with RunFolder(tmp_path / "run") as again:   # released at the end of the first
        assert again.locked


def test_a_lock_left_by_a_killed_run_is_stale(tmp_path):
    folder = tmp_path / "run"
    code = textwrap.dedent(f"""
        import sys, time
        from minidl.checkpoint import RunFolder
        run = RunFolder({str(folder)!r}).open()
        run.write_config({{"model": "m", "epochs": 1}})
        print("locked", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"pid {child.pid}"):
            RunFolder(folder).open()
        child.send_signal(signal.SIGKILL)       # no clean-up code can run
        child.wait(timeout=30)
    finally:
        child.kill()
    assert (folder / RunFolder.LOCK_NAME).exists()   # the file stays, but nobody holds it
    with RunFolder(folder) as run:
        assert run.locked


def test_writing_needs_the_lock(tmp_path):
    with pytest.raises(RuntimeError, match="must be opened"):
        RunFolder(tmp_path).save(_state(1, 1))


# ---------------------------------------------------------------------- consistency
class Crash(Exception):
    pass


# Every step of save(state, best=True) after which the process may die.
CRASH_POINTS = ["writing best.pending", "after best.pending", "writing latest",
                "after latest"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_latest_and_best_agree_after_a_crash_at_every_point(tmp_path, monkeypatch, point):
    with RunFolder(tmp_path) as run:
        run.save(_state(1, 1), best=True)
        run.save(_state(2, 1))                  # epoch 2 did not improve
    real_save, real_replace = checkpoint.save_checkpoint, checkpoint.os.replace

    def save(path, state):
        name = "best.pending" if path.name == "best.pending.npz" else "latest"
        if point == f"writing {name}":
            real_save(path.with_name(f".{path.name}.x.tmp"), state)   # a partial temp file
            raise Crash(point)
        real_save(path, state)
        if point == f"after {name}":
            raise Crash(point)

    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    with pytest.raises(Crash):
        with RunFolder(tmp_path) as run:
            run.save(_state(3, 3), best=True)   # epoch 3 improved
    monkeypatch.setattr(checkpoint, "save_checkpoint", real_save)
    assert checkpoint.os.replace is real_replace

    with RunFolder(tmp_path) as run:            # the next start recovers
        latest_epoch, best_epoch, best_model_epoch = _epochs(run)
        assert best_model_epoch == best_epoch   # best.npz is the model latest names
        # before the commit point: epoch 2 stands; after it: epoch 3 with its best
        assert (latest_epoch, best_epoch) == ((3, 3) if point == "after latest" else (2, 1))
        leftovers = sorted(p.name for p in run.checkpoint_dir.iterdir())
        assert leftovers == ["best.npz", "latest.npz"]


def test_a_best_npz_from_another_epoch_is_never_used(tmp_path):
    with RunFolder(tmp_path) as run:
        run.save(_state(1, 1), best=True)
        run.save(_state(2, 2))      # what the old two-file order could leave after a crash
        assert run.load_best() is None


# ---------------------------------------------------------------------- damage and leftovers
def test_temp_files_of_a_killed_write_are_removed_at_the_next_start(tmp_path):
    with RunFolder(tmp_path) as run:
        run.save(_state(1, 1), best=True)
    junk = [tmp_path / "checkpoints" / ".latest.npz.abc123.tmp", tmp_path / ".config.json.x.tmp"]
    for path in junk:
        path.write_bytes(b"half")
    with RunFolder(tmp_path):
        assert not any(p.exists() for p in junk)
    assert load_checkpoint(tmp_path / "checkpoints" / "latest.npz")["epoch"] == 1


def test_a_damaged_checkpoint_or_config_is_named(tmp_path):
    with RunFolder(tmp_path) as run:
        run.write_config({"model": "m", "epochs": 1})
        run.save(_state(1, 1), best=True)
        run.latest_path.write_bytes(b"PK\x03\x04 not really a zip")
        with pytest.raises(RunFolderError, match=r"latest.npz is damaged.*Delete it"):
            run.load_latest()
        run.config_path.write_text('{"model": "m", "epo')
        with pytest.raises(RunFolderError, match=r"config.json is damaged"):
            run.saved_config()


def test_status_new_resume_done(tmp_path):
    config = {"model": "m", "epochs": 2, "lr": 0.1}
    run = RunFolder(tmp_path / "r")
    assert run.status(config) == "new"
    with run:
        run.write_config(config)
        run.save(_state(2, 2), best=True)
        assert run.status(config) == "resume"
        run.write_summary({"epochs": 2})
        assert run.status(config) == "done"
        assert run.status({**config, "epochs": 3}) == "resume"
        assert run.status({**config, "lr": 0.2}) == "resume"   # train then names the difference
        with pytest.raises(RunFolderError, match=r"--lr: 0.1 in config.json, 0.2 now"):
            run.check_config({**config, "lr": 0.2})
    assert json.loads(run.summary_path.read_text()) == {"epochs": 2}


def test_status_reads_an_older_config_json_as_today_s_options(tmp_path):
    from minidl.config import TrainConfig
    old = {**TrainConfig(model="vgg08", epochs=2).to_dict(), "augment": True,
           "random_erasing": False, "num_filters": 32, "conv": "im2col"}
    for added in ("model_kwargs", "schedule_step", "no_plots", "teacher", "width",
                  "conv_method"):
        del old[added]
    today = TrainConfig(model="vgg08", epochs=2, augment=("crop", "flip")).to_dict()
    with RunFolder(tmp_path / "r") as run:
        run.write_config(old)
        run.save(_state(2, 2), best=True)
        run.write_summary({"epochs": 2})
        assert run.config_differences(today) == []
        assert run.status(today) == "done"
        assert run.config_differences({**today, "augment": ["flip"]}) == [
            ("augment", ["crop", "flip"], ["flip"])]
