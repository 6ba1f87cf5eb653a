"""A trial's finished work on disk, so that the same trial run again (after a kill, or where a time
budget ended it) goes on from there instead of starting over.

`run_trial(..., cache=TrialCache(folder, distillation_key(config)))` keeps the distilled set with
its timings as soon as distillation ends, and each final evaluation seed as it ends (seeds then
train one after another, as the full-data baseline's do). Run again, the trial reads them instead
of computing them: the set is the same tensor and a seed's network is the one its lone run trains,
so the numbers are those of an uninterrupted trial (on a GPU, which trains a trial's seeds as one
wide network, up to rounding). The benchmark suite spreads rows longer than a session (MNIST IPC
50) over several runs this way.

While it distils, `orchestrator.engine.trial_hooks.ProgressSaver` keeps the set part-way (`save_progress`,
about once a minute at a reported window); run again, the trial goes on from the last one (`progress`)
instead of iteration 0, so a distillation longer than a session (DataDAM's course setting on a CPU: about
three hours) spreads over several runs too and a kill loses the work since the last save (a minute, or one
window where a window takes longer). Such a resume is not bit-exact:
the method's random draws restart from the iteration (`Resume`) and the images' optimiser momentum from
zero; the run it continues is named in the new run's `ddorch.resumed_from` tag.

A cache belongs to one distillation (`distillation_key`: data set, image size, method and its
settings, the distilling network's architecture); seeds are kept per eval network (with its
architecture's fingerprint) and protocol. It does not notice other code changes: delete the folder
after changing a method. It keeps neither the loss curve nor intermediate checkpoint evaluations of
the distillation it holds (a resumed run logs them from where it resumed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from ddcore.errors import DDError
from ddcore.evaluate import EvalProtocol, SeedRun
from ddcore.runtime import write_atomically
from ddcore.synthetic import SyntheticSet


@dataclass
class Resume:
    """Where a distillation picks up: a set saved part-way (a Ray Tune checkpoint, or a cache's progress), the
    iteration it had reached, the distillation seconds spent to get there, the run that saved it and the
    machine it ran on (`ddcore.hardware.machine`: its pace prices the rest there only)."""

    synthetic: SyntheticSet
    iteration: int
    distill_seconds: float = 0.0
    run_id: str | None = None
    machine: str = ""


@dataclass
class Distilled:
    """A finished distillation: the set, and the seconds and memory it took."""

    synthetic: SyntheticSet
    prepare_seconds: float  # the method's work before distilling (PAD: experts)
    distill_seconds: float
    peak_memory_mib: float


class TrialCache:
    """The folder of one distillation's finished work (see the module's docstring)."""

    SET, TIMINGS, SETTINGS, PROGRESS = "synthetic.pt", "distilled.json", "settings.json", "progress.json"

    def __init__(self, folder: Path, key: str) -> None:
        self.folder, self.key = Path(folder), key

    def claim(self) -> None:
        """Mark the folder as this distillation's; a one-line error if it holds another's."""
        settings = self.folder / self.SETTINGS
        if settings.exists():
            found = json.loads(settings.read_text()).get("distillation_key")
            if found != self.key:
                raise DDError(f"trial cache {self.folder} holds another distillation ({found}); use another folder")
            return
        payload = json.dumps({"distillation_key": self.key})
        write_atomically(settings, lambda tmp: tmp.write_text(payload))

    def has_distilled(self) -> bool:
        return (self.folder / self.TIMINGS).exists()  # written after the set: the mark of a whole one

    def distilled(self) -> Distilled | None:
        if not self.has_distilled():
            return None
        timings = json.loads((self.folder / self.TIMINGS).read_text())
        return Distilled(SyntheticSet.load(self.folder / self.SET), **timings)

    def save_distilled(self, done: Distilled) -> None:
        done.synthetic.save(self.folder / self.SET)
        timings = json.dumps({f.name: getattr(done, f.name) for f in fields(done) if f.name != "synthetic"})
        write_atomically(self.folder / self.TIMINGS, lambda tmp: tmp.write_text(timings))
        self._drop_progress()

    def _progress_state(self) -> dict | None:
        """The state file of the set kept part-way; None when there is none or the distillation finished."""
        state_file = self.folder / self.PROGRESS
        if self.has_distilled() or not state_file.exists():
            return None
        return json.loads(state_file.read_text())

    def progress(self) -> Resume | None:
        """The set saved part-way by an earlier run of this distillation, if it did not finish."""
        state = self._progress_state()
        if state is None:
            return None
        synthetic = SyntheticSet.load(self.folder / state.pop("set"))
        return Resume(synthetic, **state)

    def progress_reached(self) -> tuple[int, float, str]:
        """The iteration of the set kept part-way (0: none), the seconds and the machine that took it
        there, without reading the set."""
        state = self._progress_state() or {}
        return state.get("iteration", 0), state.get("distill_seconds", 0.0), state.get("machine", "")

    def save_progress(self, resume: Resume) -> None:
        """Keep the set part-way. Each set has its own file, named by the state file written after it, so a
        kill in between leaves the previous pair whole."""
        name = f"progress_{resume.iteration}.pt"
        resume.synthetic.save(self.folder / name)
        state = {"set": name, **{f.name: getattr(resume, f.name) for f in fields(resume) if f.name != "synthetic"}}
        write_atomically(self.folder / self.PROGRESS, lambda tmp: tmp.write_text(json.dumps(state)))
        self._drop_progress(keep=name)

    def _drop_progress(self, keep: str | None = None) -> None:
        for path in self.folder.glob("progress_*.pt"):
            if path.name != keep:
                path.unlink()
        if keep is None:
            (self.folder / self.PROGRESS).unlink(missing_ok=True)

    def _seed_file(self, model: str, fingerprint: str, protocol: EvalProtocol, seed: int) -> Path:
        return self.folder / f"eval_{model}-{fingerprint}_{protocol.name}_seed{seed}.json"

    def seed_runs(self, model: str, fingerprint: str, protocol: EvalProtocol, seeds: tuple[int, ...]) -> dict:
        """The cached final evaluations of `model` among `seeds`, by seed."""
        runs = {seed: SeedRun.load(self._seed_file(model, fingerprint, protocol, seed), "evaluation") for seed in seeds}
        return {seed: run for seed, run in runs.items() if run is not None}

    def save_seed_run(self, model: str, fingerprint: str, protocol: EvalProtocol, run: SeedRun) -> None:
        run.save(self._seed_file(model, fingerprint, protocol, run.seed))
