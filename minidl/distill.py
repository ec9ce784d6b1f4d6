"""Knowledge distillation in a training run (Hinton, Vinyals & Dean, 2015, "Distilling the
Knowledge in a Neural Network"; the slides' "Dark knowledge"): the teacher of a finished run,
the loss that mixes its soft targets with the labels, and a transfer set without one class.

    python -m minidl.train mlp --model-kwargs "hidden=(800, 800)" \\
        --teacher runs/teacher --temperature 20 --soft-weight 0.9 [--exclude-class 3]

The training step then reads ``loss = loss_fn(student(x), y, teacher(x))`` (see
``minidl.train.train_step``); the loss itself, with its gradient, is ``losses.DistillationLoss``.
"""
from __future__ import annotations

import numpy as np

from . import losses
from .checkpoint import RunFolder
from .config import TrainConfig

TEMPERATURE = 20.0  # the paper's MNIST student (800 units): 74 test errors at T = 20; with 300+
                    # units per layer, all temperatures above 8 did about as well
SOFT_WEIGHT = 0.9   # hard targets at 1 - W = 0.1: "down-weighted", as the slides advise


class TeacherError(ValueError):
    """A --teacher folder that cannot serve as a teacher; the message says why."""


def criterion(cfg: TrainConfig) -> losses.DistillationLoss:
    """The training loss of a distilled run: ``W * T^2 * CE(soft targets, student at T) +
    (1 - W) * CE(labels, student)`` with T = ``cfg.temperature``, W = ``cfg.soft_weight``."""
    T = TEMPERATURE if cfg.temperature is None else cfg.temperature
    W = SOFT_WEIGHT if cfg.soft_weight is None else cfg.soft_weight
    return losses.DistillationLoss(T, hard_weight=1.0 - W, soft_weight=W)


def teacher_run(folder, student: TrainConfig) -> tuple[TrainConfig, dict]:
    """``(config, state)`` of the teacher trained in run folder ``folder``: its TrainConfig and
    its best-validation checkpoint. A TeacherError when the folder is no finished run on the
    student's data set."""
    run = RunFolder(folder)
    where = f"--teacher {folder}"
    if not run.path.is_dir():
        raise TeacherError(f"{where}: no such folder")
    if student.out is not None and run.path.resolve() == RunFolder(student.out).path.resolve():
        raise TeacherError(f"{where} is this run's own folder (--out); give the teacher's")
    if not run.is_run_folder():
        raise TeacherError(f"{where} is not a minidl run folder (no run config.json)")
    teacher = TrainConfig.from_dict(run.saved_config())
    if teacher.dataset != student.dataset:
        raise TeacherError(f"{where} was trained on {teacher.dataset}, this run uses "
                           f"{student.dataset}: the soft targets must be over the same classes")
    state = run.load_best()
    if state is None:
        raise TeacherError(f"{where} has no best checkpoint (checkpoints/best.npz); train the "
                           "teacher for at least one epoch first")
    return teacher, state


def without_class(x, y, k: int, num_classes: int):
    """``(x, y)`` without the examples of class ``k``: a transfer set that never shows it.

    x: (N, ...), y: (N,) -> (M, ...), (M,) with M the examples of the other classes.
    """
    if not 0 <= k < num_classes:
        raise ValueError(f"--exclude-class {k}: the data set's classes are 0 .. "
                         f"{num_classes - 1}")
    keep = np.flatnonzero(y != k)
    if len(keep) == 0:
        raise ValueError(f"--exclude-class {k}: no training example of another class is left")
    return x[keep], y[keep]


def load_teacher(student: TrainConfig, build):
    """``(model, description)``: the teacher of ``student.teacher`` built by ``build(config)``
    from its config.json, with its best weights, in eval mode on the student's device."""
    teacher_cfg, state = teacher_run(student.teacher, student)
    teacher = build(teacher_cfg)
    try:
        teacher.load_state_dict(state["model"])
    except (KeyError, ValueError) as err:
        raise TeacherError(f"--teacher {student.teacher}: its best checkpoint does not fit the "
                           f"model its config.json builds ({err})") from None
    if student.device != "cpu":
        teacher.to(student.device)
    crit = criterion(student)
    about = (f"{student.teacher} ({teacher_cfg.model}, {teacher.num_parameters():,} "
             f"parameters): temperature {crit.temperature}, soft weight {crit.soft_weight}")
    return teacher.eval(), about
