"""What a study is: runs (train options) plus the source document's own figures beside them.

A study is data. Each ``Run`` is a ``python -m minidl.train`` command line (``argv``: the
model and the options this run changes) that the runner completes with the study's shared
``settings`` and ``--out``; ``kind="landscape"`` runs train the same model while probing the
loss surface at every step (``minidl.analysis.landscape``) instead. ``after`` names per-run
measurements on the trained model (``"filters"``, ``"prune"``, ``"bias_correction"``) that
write small files into the run folder, so a run folder holds everything its report needs.

A run may use another run's folder (a distilled student needs its teacher's): the placeholder
``{run:NAME}`` in its argv becomes the folder of run ``NAME`` of the same study (and the same
repeat), and the runner trains ``NAME`` first.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# What the runner can do after training a run (see coursework/runner.py).
AFTER_STEPS = ("filters", "prune", "bias_correction")
KINDS = ("train", "landscape")
PLACEHOLDER = re.compile(r"\{run:([^}]+)\}")  # {run:teacher} -> that run's folder


@dataclass(frozen=True)
class Run:
    """One run: ``argv`` is the model and the train options this run sets.

    ``report`` holds the source document's figures for this run, keyed like our metrics
    (``test_acc``, ``test_loss``, ``train_seconds``, ``val_acc``, ``seconds_per_epoch``,
    ``params``, ``mult_adds``, ``test_errors``, ...); ``quick`` options are added under
    ``--quick`` after the study's own quick options.
    """

    name: str
    argv: tuple[str, ...]
    label: str
    report: dict = field(default_factory=dict)
    quick: tuple[str, ...] = ()
    kind: str = "train"
    after: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Run {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        unknown = [a for a in self.after if a not in AFTER_STEPS]
        if unknown:
            raise ValueError(f"Run {self.name!r}: unknown after-step(s) {unknown}; "
                             f"choose from {AFTER_STEPS}")
        if self.name in self.needs:
            raise ValueError(f"Run {self.name!r} names its own folder ({{run:{self.name}}})")

    @property
    def needs(self) -> tuple[str, ...]:
        """Names of the runs whose folders this run's argv uses, in order of appearance."""
        found = [m for token in (*self.argv, *self.quick) for m in PLACEHOLDER.findall(token)]
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class Study:
    """A document's experiment: runs that differ in one thing, and how to tabulate them.

    ``settings``: train options every run shares (the document's setting, spelt out);
    ``quick``: options ``--quick`` appends (a few hundred images, one epoch, tiny widths);
    ``columns``: the metrics of the table, in order; ``measure``: parameters of the
    measurements (landscape probe step sizes, pruning fraction and layers, the filter layer);
    ``repeats``: how many times ``run`` trains each run by default (seeds 0..repeats-1; the
    table gives mean ± sd); ``baseline``: the run a ``time_reduction`` column compares with;
    ``notes``: what the document found, for the results README.
    """

    name: str
    title: str
    source: str                 # the seed document and section, e.g. "004 section 1.3"
    runs: tuple[Run, ...]
    settings: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    columns: tuple[str, ...] = ("test_acc", "test_loss", "train_seconds")
    measure: dict = field(default_factory=dict)
    notes: str = ""
    repeats: int = 1
    baseline: str = ""

    def __post_init__(self):
        names = [r.name for r in self.runs]
        if len(set(names)) != len(names):
            raise ValueError(f"Study {self.name!r}: run names repeat: {names}")
        if self.repeats < 1:
            raise ValueError(f"Study {self.name!r}: repeats must be >= 1, got {self.repeats}")
        if self.baseline and self.baseline not in names:
            raise ValueError(f"Study {self.name!r}: baseline {self.baseline!r} is not one of "
                             f"its runs: {', '.join(names)}")
        for run in self.runs:
            missing = [n for n in run.needs if n not in names]
            if missing:
                raise ValueError(f"Study {self.name!r}: run {run.name!r} needs the folder of "
                                 f"{missing}, which the study does not have")
        self.ordered(names)  # refuses a cycle now, not when the study is run

    def run(self, name: str) -> Run:
        for r in self.runs:
            if r.name == name:
                return r
        raise ValueError(f"study {self.name!r} has no run {name!r}; its runs: "
                         f"{', '.join(r.name for r in self.runs)}")

    def ordered(self, names=()) -> list[Run]:
        """The runs ``names`` (all when empty) and every run they need, each after the runs it
        needs, otherwise in the study's order."""
        wanted = [self.run(n) for n in names] if names else list(self.runs)
        order: list[Run] = []

        def visit(run: Run, path: tuple) -> None:
            if run.name in path:
                raise ValueError(f"Study {self.name!r}: runs need each other in a cycle: "
                                 f"{' -> '.join((*path, run.name))}")
            if run in order:
                return
            for name in run.needs:
                visit(self.run(name), (*path, run.name))
            order.append(run)

        for run in wanted:
            visit(run, ())
        return order

    def train_argv(self, run: Run, quick: bool = False, overrides: tuple = ()) -> list[str]:
        """The train argv of ``run`` (without ``--out``): its model, the study's settings, the
        run's options, then the quick options and ``overrides`` (later options win in argparse)."""
        argv = [run.argv[0], *self.settings, *run.argv[1:]]  # the run's own options win
        if quick:
            argv += [*self.quick, *run.quick]
        return argv + list(overrides)
