"""One trial: distil a synthetic set, look at it, evaluate it, compare with the full-data baseline.

`ddorch run` calls `run_trial` directly; Ray Tune sweeps run the same function in each trial.
Everything goes to one MLflow run; a failure (bad input found late, NaN loss, a killed trial)
marks that run FAILED with the reason and keeps what was logged.

The headline number is `acc_{model}_mean`: the final set, mean over the eval seeds. DataDAM's and
PAD's scripts report instead the best mean over evaluations during distillation (DataDAM's
main_DataDAM.py every 2000 iterations, `max_mean`; PAD's distill/PAD.py every `eval_it`,
`Max_Accuracy`). With `checkpoint_eval_every` a trial computes that too, as
`acc_{model}_best_checkpoint_test_selected`: chosen by test accuracy, so optimistic and not
comparable with the headline.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ddcore.analyses.cross_arch import CrossArchConfig, cross_architecture
from ddcore.baseline import full_data_baseline
from ddcore.data import get_spec, load_dataset
from ddcore.errors import DDError
from ddcore.evaluate import (
    EvalProtocol,
    EvalResult,
    EvalSpec,
    architecture_flops,
    evaluate,
    without_later_defaults,
)
from ddcore.hardware import require_native_bf16
from ddcore.methods import MethodConfig, StepReport, get_method
from ddcore.models import architecture_fingerprint, get_model
from ddcore.runtime import resolve_device
from ddcore.synthetic import SyntheticSet
from ddcore.visualize import save_curves, save_grids
from orchestrator.engine.analyses import record_analysis
from orchestrator.engine.cluster import on_node
from orchestrator.engine.trial_hooks import (
    CheckpointEvaluation,
    CheckpointHook,
    GridLogger,
    MetricsLogger,
    ProgressSaver,
    QuickEvaluation,
    Step,
    TrialHook,
    TrialPaused,
    eval_metrics,
    val_metrics,
)
from orchestrator.store import run_schema as schema
from orchestrator.store.run_schema import Tag
from orchestrator.store.tracking import Tracker, logged_params
from orchestrator.store.trial_cache import Distilled, Resume, TrialCache


@dataclass
class TrialConfig:
    """Everything that defines a trial; the method's own knobs live in `method_config`, the evaluation's
    in `eval`. Built by `orchestrator.engine.resolve.resolve_trial`, which checks every value."""

    dataset: str
    method: str
    method_config: MethodConfig
    preset: str  # the method's preset the config started from
    eval: EvalSpec
    # Also evaluate the first eval model with all seeds every N iterations (best-of-checkpoints; a
    # resumed trial only knows the checkpoints since it resumed).
    checkpoint_eval_every: int | None = None
    baseline: bool = True  # compare with the (cached) full-data baseline of each eval model
    cross_arch_models: list[str] = field(default_factory=list)  # if any: the cross-architecture matrix too
    data_root: str | None = None
    image_size: int | None = None
    force_bf16: bool = False  # run bf16 where the hardware lacks it (recorded as Tag.BF16_FORCED)
    # Which settings layer set each method setting that differs from the preset's (resolve_trial);
    # recorded as a tag, not part of the trial's identity or params.
    sources: dict[str, str] = field(default_factory=dict)
    # What chooses (schema.SELECTIONS): "val" holds the data set's validation part out of everything that
    # learns and reads it for the quick evaluations and the best checkpoint; "test": the papers' protocol.
    selection: str = "test"
    # Sequential seeds: evaluate the first eval model with `eval_seeds` networks, then add one at a time up
    # to this many while `run_trial`'s `more_seeds` asks for it (None: exactly `eval_seeds`).
    max_eval_seeds: int | None = None

    def protocol(self) -> EvalProtocol:
        """The resolved evaluation protocol (a one-line error for unknown names)."""
        return self.eval.protocol_for(self.dataset)

    def to_dict(self) -> dict:
        """Every setting, flat as runs have always logged them (`eval_models`, ...), and the protocol's
        resolved values under `protocol` (logged as `protocol.*`)."""
        values = {}
        for name, value in asdict(self).items():
            values.update(self.eval.params() if name == "eval" else {name: value})
        del values["sources"]
        values["method_config"] = self.method_config.to_dict()
        values["protocol"] = asdict(self.protocol())
        return values


def trial_key(trial: TrialConfig) -> str:
    """A hash of everything in the trial that changes its result (not the device, paths, log cadence)."""
    values = without_new_defaults(trial.to_dict())
    for name in ("data_root", "baseline", "force_bf16"):
        values.pop(name)
    for name in ("device", "log_every"):
        values["method_config"].pop(name)
    return settings_key(without_later_defaults(values))


def without_new_defaults(values: dict) -> dict:
    """`values` less `selection` "test" and `max_eval_seeds` None: keys of trials recorded before they existed."""
    new = {"selection": "test", "max_eval_seeds": None}
    return {k: v for k, v in values.items() if k not in new or v != new[k]}


def distillation_key(config: TrialConfig) -> str:
    """A hash of what the distilled set depends on: data set, image size, method settings (not the
    device or log cadence), and the distilling network's architecture (its fingerprint)."""
    method = config.method_config.to_dict()
    for name in ("device", "log_every"):
        method.pop(name)
    size = config.image_size or get_spec(config.dataset).image_size
    values = {"dataset": config.dataset, "image_size": size, "method": config.method, "method_config": method}
    if config.selection == "val":  # distilled from the training images less the validation part
        values["selection"] = config.selection
    return settings_key({**values, "network": network_fingerprint(config, method["model"])})


def network_fingerprint(config: TrialConfig, model: str) -> str:
    """`model`'s architecture fingerprint on the trial's data (its channels, classes and image size)."""
    spec = get_spec(config.dataset)
    return architecture_fingerprint(model, spec.channels, spec.num_classes, config.image_size or spec.image_size)


def settings_key(values: dict) -> str:
    """20 hex digits of the settings' hash (JSON with sorted keys): the same settings, the same key."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:20]


def bf16_asked(config: TrialConfig) -> str | None:
    """What of the trial runs in bf16 (`bf16 distillation forwards and evaluation`), or None."""
    parts = [
        name
        for name, asked in (
            ("distillation forwards", getattr(config.method_config, "bf16", False)),
            ("evaluation", config.eval.precision == "bf16"),
        )
        if asked
    ]
    return f"bf16 {' and '.join(parts)}" if parts else None


def check_precision(config: TrialConfig) -> str | None:
    """Refuse bf16 (one line) where the trial's device, on the machine this runs on, lacks native bf16,
    unless `force_bf16`; then the note the trial records. None when nothing runs in bf16 or it is native."""
    asked = bf16_asked(config)
    if asked is None:
        return None
    return require_native_bf16(asked, resolve_device(config.method_config.device), config.force_bf16)


def describe(config: TrialConfig, distill_sets: int = 1) -> str:
    """MLflow's run description: what the run is and the command that reproduces it (from its params as
    logged); `distill_sets` > 1: the parent of that many sets (orchestrator.engine.sets), seeds from the config's."""
    from orchestrator.store.reproduce import command_from_params

    several = {"distill_seeds": distill_sets} if distill_sets > 1 else {}
    command, _ = command_from_params(logged_params({**config.to_dict(), **several}))
    method = config.method_config
    sets = (
        f"{distill_sets} distilled sets (seeds {method.seed}..{method.seed + distill_sets - 1}, one child run each) of "
        if several
        else ""
    )
    return (
        f"{sets}{config.method} on {config.dataset}, IPC {method.ipc} ({config.preset} preset), {method.iterations} "
        f"iterations with {method.model}; evaluated on {', '.join(config.eval.models)} with the "
        f"{config.protocol().name} protocol, {config.eval.seeds} seed(s).\n\nReproduce it with:\n\n    {command}\n"
    )


def reporting_every(method_config: MethodConfig, every: int | None) -> MethodConfig:
    """The loop calls back every `log_every` iterations: make every `every`-th iteration one of them."""
    if not every or every % method_config.log_every == 0:
        return method_config
    return replace(method_config, log_every=math.gcd(method_config.log_every, every))


# Sequential seeds: given the first eval model's result so far, whether another network is needed.
SeedRule = Callable[[EvalResult], bool]


class TrialStopped(Exception):
    """Raised by a `CheckpointHook` to end its trial on purpose (e.g. it cannot reach a target).

    The MLflow run then ends FINISHED with the reason in `ddorch.stopped` and the iteration it reached,
    like a trial ASHA stops.
    """


@dataclass
class TrialResult:
    run_id: str
    synthetic: SyntheticSet
    evaluations: dict[str, EvalResult]
    baselines: dict[str, EvalResult]
    distill_seconds: float
    artefact_dir: Path
    prepare_seconds: float = 0.0  # the method's work before distilling (PAD: experts)
    peak_memory_mib: float = 0.0  # GPU: peak allocated during distillation; CPU: process peak RSS
    # (iteration, mean test accuracy) of the checkpoint the selection chose, with `checkpoint_eval_every`
    best_checkpoint: tuple[int, float] | None = None
    from_cache: bool = False  # the set (whole or part-way) or some evaluation seeds were read from a `TrialCache`


@functools.lru_cache(maxsize=2)
def load_cached(dataset: str, data_root: str | None, image_size: int | None, selection: str = "test"):
    """Trials that share a process (Ray Tune reuses actors) load the data set once; with selection "val",
    less its validation part; on a cluster, a data set missing on a node says which node."""
    try:
        data = load_dataset(dataset, data_root, image_size)
    except DDError as error:
        raise DDError(f"{on_node()}{error}") from None
    return data.with_validation() if selection == "val" else data


def check_models(names: list[str], channels: int, classes: int, size: int) -> None:
    for name in names:
        get_model(name, channels, classes, size)  # raises a one-line DDError for unknown names


def run_trial(
    config: TrialConfig,
    tracker: Tracker,
    progress: bool = True,
    output_dir: Path | None = None,
    report_every: int | None = None,
    on_checkpoint: CheckpointHook | None = None,
    resume: Resume | None = None,
    cache: TrialCache | None = None,
    more_seeds: SeedRule | None = None,
    deadline: float | None = None,
) -> TrialResult:
    """Distil, save and log artefacts, evaluate on each architecture, compare with baselines.

    With `report_every`, the set is evaluated every so many iterations (first eval model, one
    seed) and logged as `eval_accuracy`; `on_checkpoint` then receives it (Ray Tune reports and
    checkpoints there). `resume` continues a checkpointed distillation in this same run. `cache` keeps the
    finished set and final evaluation seeds on disk, and the set part-way while it distils; it reads what an
    earlier run of the trial left there (a set part-way: this run distils on from it).
    `more_seeds` (with `config.max_eval_seeds`) adds networks on the first eval model while it says so.
    `deadline` (`time.monotonic()`, with a `cache`): past it, the distillation keeps its set and pauses
    (`TrialPaused`); run again, it goes on.
    """
    trial = None
    try:
        trial = _Trial(config, tracker, progress, report_every, on_checkpoint, resume, cache, deadline)
        trial.more_seeds = more_seeds
        return _run(trial, output_dir)
    except DDError as error:
        tracker.finish(failure=str(error))
        raise
    except TrialPaused as pause:
        tracker.finish(stopped=str(pause))
        raise
    except TrialStopped as stop:
        tracker.finish(stopped=str(stop), stopped_at=trial.reached)
        raise
    except SystemExit as error:
        # A clean exit asked for from outside: Ray Tune's schedulers (ASHA) end trials this way, in a report.
        if error.code not in (0, None):
            tracker.finish(failure=f"SystemExit: {error.code}")
        elif trial is not None and trial.reached:
            tracker.finish(stopped="stopped early by the scheduler", stopped_at=trial.reached)
        else:
            tracker.finish(stopped="ended from outside before its first evaluation")
        raise
    except BaseException as error:  # KeyboardInterrupt, a killed worker, a bug: never leave RUNNING
        tracker.finish(failure=f"{type(error).__name__}: {error}")
        raise


def _run(trial: _Trial, output_dir: Path | None) -> TrialResult:
    config, tracker = trial.config, trial.tracker
    done = trial.distilled()
    synthetic = done.synthetic
    artefacts = trial.save(synthetic, Path(output_dir or tempfile.mkdtemp(prefix="ddorch-")) / tracker.run_id)
    evaluations, baselines = trial.evaluate(synthetic)
    best = trial.best_checkpoint(evaluations)
    if config.cross_arch_models:  # on this run itself (see orchestrator.engine.analyses), same seeds and protocol
        trial.cross_arch(synthetic, artefacts.parent)
    trial.write_summary(artefacts, done, evaluations, baselines, best)
    tracker.finish()
    return TrialResult(
        tracker.run_id,
        synthetic,
        evaluations,
        baselines,
        done.distill_seconds,
        artefacts,
        done.prepare_seconds,
        done.peak_memory_mib,
        best,
        trial.from_cache,
    )


class _Trial:
    """One trial's steps, in order: check, prepare, distil (its hooks log, evaluate and report on the
    way: orchestrator.engine.trial_hooks), save, evaluate, best checkpoint, cross-architecture, summary.
    Everything it learns goes to `tracker`."""

    def __init__(
        self,
        config: TrialConfig,
        tracker: Tracker,
        progress: bool,
        report_every: int | None,
        on_checkpoint: CheckpointHook | None,
        resume: Resume | None,
        cache: TrialCache | None,
        deadline: float | None = None,
    ) -> None:
        if deadline is not None and cache is None:
            raise ValueError("a deadline pauses a trial into its cache: give it one")
        if config.checkpoint_eval_every is not None and config.checkpoint_eval_every < 1:
            raise DDError(f"checkpoint_eval_every must be positive, got {config.checkpoint_eval_every}")
        if config.selection not in schema.SELECTIONS:
            raise DDError(f"unknown selection '{config.selection}'; use one of {', '.join(schema.SELECTIONS)}")
        self.config, self.tracker, self.progress = config, tracker, progress
        self.cache, self.from_cache = cache, False
        self.method = get_method(config.method)
        self.data = load_cached(config.dataset, config.data_root, config.image_size, config.selection)
        self.method_config = reporting_every(config.method_config, config.checkpoint_eval_every)
        self.method_config.validate(self.data.class_counts())
        models = [self.method_config.model, *config.eval.models, *config.cross_arch_models]
        check_models(models, self.data.channels, self.data.num_classes, self.data.image_size)
        self.protocol = config.protocol()
        if cache is not None:
            cache.claim()
        self.resume = resume or self.resume_from_cache()
        if resume is None:  # a new run (not a Tune trial continuing its own)
            tracker.log_params(config.to_dict())
            tracker.set_tags({Tag.NOTE: describe(config)})
            if self.data.val_labels is not None:
                tracker.log_params(
                    {schema.VAL_SIZE: len(self.data.val_labels), schema.VAL_DIGEST: self.data.val_digest}
                )
        tracker.set_tags({Tag.DATASET: config.dataset, Tag.METHOD: config.method, Tag.PRESET: config.preset})
        if config.sources:
            tracker.set_tags({Tag.SETTINGS_FROM: ", ".join(f"{k}: {v}" for k, v in sorted(config.sources.items()))})
        forced = check_precision(config)  # here, on the worker's own hardware, before any work
        if forced:
            tracker.set_tags({Tag.BF16_FORCED: forced})
        self.reached = 0  # the last iteration evaluated on the way (where a trial stopped early stopped)
        self.seeds = tuple(range(config.eval.seeds))
        self.first_model = config.eval.models[0]
        self.more_seeds: SeedRule | None = None
        self.deadline = deadline
        self.hooks = self.build_hooks(report_every, on_checkpoint)

    def resume_from_cache(self) -> Resume | None:
        """The set an earlier run of this trial saved part-way in the cache (None: none, or it finished)."""
        resume = self.cache.progress() if self.cache else None
        if resume is not None:  # from_cache: this run's wall time is a part of the work
            self.read_from_cache()
            self.tracker.set_tags({Tag.RESUMED_FROM: f"{resume.run_id} at iteration {resume.iteration}"})
        return resume

    def build_hooks(self, report_every: int | None, on_checkpoint: CheckpointHook | None) -> list[TrialHook]:
        """Called in this order: losses, the grid, the checkpoint evaluation, the quick one (Tune reports last),
        then the cache's progress."""
        tracker, iterations = self.tracker, self.method_config.iterations
        start_iteration, earlier = (self.resume.iteration, self.resume.distill_seconds) if self.resume else (0, 0.0)
        self.metrics = MetricsLogger(tracker, self.method_config.device, iterations, start_iteration, earlier)
        every = self.config.checkpoint_eval_every
        self.checkpoint_eval = CheckpointEvaluation(
            tracker, every, self.first_model, self.seeds, iterations, self.config.selection
        )
        quick = QuickEvaluation(tracker, report_every, on_checkpoint, iterations, self.config.selection)
        hooks = [self.metrics, GridLogger(tracker), self.checkpoint_eval, quick]
        return hooks + (
            [ProgressSaver(self.cache, tracker, iterations, self.resume, self.deadline)] if self.cache else []
        )

    def evaluate_set(self, model_name: str, synthetic: SyntheticSet, seeds: tuple[int, ...], show: bool = False):
        return evaluate(
            model_name,
            synthetic.images,
            synthetic.labels,
            self.data,
            self.protocol,
            seeds,
            self.method_config.device,
            lr=synthetic.learned_lr,
            dsa_strategy=self.method_config.dsa_strategy,
            progress=show,
        )

    def on_step(self, report: StepReport) -> None:
        """The loop's callback: every hook's `after_step`, in order, sharing one evaluation (if any is due)."""
        seeds = tuple(sorted({seed for hook in self.hooks for seed in hook.seeds_at(report.iteration)}))
        step = Step(report, seeds, self.evaluate_step)
        for hook in self.hooks:
            hook.after_step(step)

    def evaluate_step(self, iteration: int, snapshot: SyntheticSet, seeds: tuple[int, ...]) -> EvalResult:
        result = self.evaluate_set(self.first_model, snapshot, seeds)
        self.reached = iteration
        return result

    def distilled(self) -> Distilled:
        """The set and its timings: the cache's if it holds them, else prepared and distilled here (then cached)."""
        done = self.cache.distilled() if self.cache else None
        if done is not None:
            self.read_from_cache()
            self.tracker.log_metrics(
                {
                    schema.PREPARE_SECONDS: done.prepare_seconds,
                    schema.DISTILL_SECONDS: done.distill_seconds,
                    schema.PEAK_MEMORY_MIB: done.peak_memory_mib,
                }
            )
            return done
        prepare_seconds = self.prepare()
        synthetic, seconds, peak_mib = self.distil()
        done = Distilled(synthetic, prepare_seconds, seconds, peak_mib)
        if self.cache:
            self.cache.save_distilled(done)
        return done

    def read_from_cache(self) -> None:
        if not self.from_cache:
            self.tracker.set_tags({Tag.FROM_CACHE: str(self.cache.folder)})
        self.from_cache = True

    def prepare(self) -> float:
        """The method's work before distilling (PAD: its experts, cached or trained); its seconds (0 for a
        method with nothing to prepare)."""
        started = time.perf_counter()
        prepared = self.method.prepare(self.data, self.method_config, self.progress)
        seconds = time.perf_counter() - started
        if not (prepared.artefacts or prepared.metrics):
            return 0.0
        self.tracker.log_metrics({schema.PREPARE_SECONDS: seconds, **prepared.metrics})
        for path in prepared.artefacts:
            self.tracker.log_artifact(path, "prepared")
        return seconds

    def distil(self) -> tuple[SyntheticSet, float, float]:
        """The synthetic set, the seconds it took and the peak memory (MiB), between the hooks'
        `before_distill` and `after_distill` (as detectron2's `TrainerBase.train`)."""
        for hook in self.hooks:
            hook.before_distill()
        synthetic = self.method.distill(
            self.data,
            self.method_config,
            callback=self.on_step,
            progress=self.progress,
            start=self.resume.synthetic if self.resume else None,
            start_iteration=self.resume.iteration if self.resume else 0,
        )
        for hook in self.hooks:
            hook.after_distill()
        return synthetic, self.metrics.seconds, self.metrics.peak_mib

    def save(self, synthetic: SyntheticSet, artefacts: Path) -> Path:
        """The set, its grids and the loss curve, on disk under `artefacts` and in MLflow."""
        synthetic.save(artefacts / "synthetic.pt")
        grids = save_grids(synthetic, artefacts / "grids")
        for path in grids:
            self.tracker.log_artifact(path, "grids")
        self.tracker.log_image(grids[0], schema.GRID_IMAGE, self.method_config.iterations)
        self.tracker.log_artifact(artefacts / "synthetic.pt")
        if self.metrics.curves:
            curve = save_curves(self.metrics.curves, artefacts / "loss_curve.png", "iteration", "loss", log_y=True)
            self.tracker.log_artifact(curve)
        return artefacts

    def evaluate(self, synthetic: SyntheticSet) -> tuple[dict[str, EvalResult], dict[str, EvalResult]]:
        """Every eval model trained on the final set (all seeds), and its cached full-data baseline."""
        evaluations: dict[str, EvalResult] = {}
        baselines: dict[str, EvalResult] = {}
        if not self.seeds:
            return evaluations, baselines
        self.tracker.log_metrics({"eval_lr": self.protocol.training_lr(synthetic.learned_lr)})
        for name in self.config.eval.models:
            result = evaluations[name] = self.evaluate_final(name, synthetic)
            if name == self.first_model:
                result = evaluations[name] = self.add_seeds(name, synthetic, result)
            self.tracker.log_metrics(
                {
                    schema.acc_mean(name): result.accuracy_mean,
                    schema.acc_std(name): result.accuracy_std,
                    schema.balanced_acc_mean(name): result.balanced_accuracy_mean,
                    schema.train_seconds(name): result.train_seconds_mean,
                    schema.flops(name): result.flops_per_image,
                    **val_metrics(result, schema.val_acc_mean(name), schema.val_acc_std(name)),
                }
            )
            if name == self.first_model:  # the eval-accuracy curve's last point: the final set
                steps = self.method_config.iterations
                self.tracker.log_metrics(eval_metrics(result), step=steps)
                self.tracker.log_metrics({schema.EVAL_NETWORKS: len(result.runs)})
            if self.config.baseline:
                device = self.method_config.device
                baseline = baselines[name] = full_data_baseline(self.data, name, device=device, progress=self.progress)[
                    0
                ]
                self.tracker.log_metrics(
                    {
                        schema.baseline_acc(name): baseline.accuracy_mean,
                        schema.baseline_train_seconds(name): baseline.train_seconds_mean,
                        **val_metrics(baseline, schema.baseline_val_acc(name)),
                    }
                )
        return evaluations, baselines

    def evaluate_final(self, name: str, synthetic: SyntheticSet) -> EvalResult:
        """All seeds on the final set; with a cache, one seed at a time: cached ones read, new ones cached."""
        if self.cache is None:
            return self.evaluate_set(name, synthetic, self.seeds, self.progress)
        data = self.data
        fingerprint = network_fingerprint(self.config, name)
        cached = self.cache.seed_runs(name, fingerprint, self.protocol, self.seeds)
        if cached:
            self.read_from_cache()
        for seed in sorted(set(self.seeds) - set(cached)):
            run = cached[seed] = self.evaluate_set(name, synthetic, (seed,), self.progress).runs[0]
            self.cache.save_seed_run(name, fingerprint, self.protocol, run)
        flops = architecture_flops(name, data.channels, data.num_classes, data.image_size)
        return EvalResult(name, self.protocol.name, flops, [cached[seed] for seed in self.seeds])

    def add_seeds(self, name: str, synthetic: SyntheticSet, result: EvalResult) -> EvalResult:
        """Sequential seeds: one more network at a time, up to `max_eval_seeds`, while `more_seeds` asks."""
        while self.more_seeds and len(result.runs) < (self.config.max_eval_seeds or 0) and self.more_seeds(result):
            result.runs += self.evaluate_set(name, synthetic, (len(result.runs),), self.progress).runs
        return result

    def best_checkpoint(self, evaluations: dict[str, EvalResult]) -> tuple[int, float] | None:
        """With `checkpoint_eval_every`: the best of the checkpoints by the selection's accuracy, the final
        set being the last one; (its iteration, its test accuracy)."""
        if not (self.config.checkpoint_eval_every and evaluations):
            return None
        return self.checkpoint_eval.best(evaluations[self.first_model])

    def cross_arch(self, synthetic: SyntheticSet, folder: Path) -> None:
        config = self.config
        settings = CrossArchConfig(
            tuple(config.cross_arch_models),
            config.eval.seeds,
            config.eval.epochs,
            self.method_config.device,
            eval_protocol=config.eval.protocol,
            eval_batch_size=config.eval.batch_size,
            eval_precision=config.eval.precision,
            force_bf16=config.force_bf16,  # checked, and recorded, with the trial itself
        )
        record_analysis(
            self.tracker, "cross_arch", cross_architecture(synthetic, self.data, settings, self.progress), folder
        )

    def write_summary(
        self,
        artefacts: Path,
        done: Distilled,
        evaluations: dict[str, EvalResult],
        baselines: dict[str, EvalResult],
        best: tuple[int, float] | None,
    ) -> None:
        checkpoints = None
        if best:
            checkpoints = {
                "note": (
                    "best of the checkpoints by validation accuracy; its test accuracy"
                    if self.config.selection == "val"
                    else "best of the checkpoints by test accuracy: optimistic, not comparable with the final mean"
                ),
                "model": self.first_model,
                "every": self.config.checkpoint_eval_every,
                "mean_by_iteration": self.checkpoint_eval.checkpoints,
                "best_iteration": best[0],
                "best_mean": best[1],
            }
        summary = {
            "run_id": self.tracker.run_id,
            "config": self.config.to_dict(),
            "eval_protocol": asdict(self.protocol),
            "eval_lr": self.protocol.training_lr(done.synthetic.learned_lr),
            "checkpoints": checkpoints,
            "prepare_seconds": done.prepare_seconds,
            "distill_seconds": done.distill_seconds,
            "peak_memory_mib": done.peak_memory_mib,
            "from_cache": self.from_cache,
            "evaluations": {name: asdict(result) for name, result in evaluations.items()},
            "baselines": {name: asdict(result) for name, result in baselines.items()},
        }
        (artefacts / "summary.json").write_text(json.dumps(summary, indent=2))
        self.tracker.log_artifact(artefacts / "summary.json")
