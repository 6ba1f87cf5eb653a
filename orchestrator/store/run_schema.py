"""Every name ddorch writes to MLflow and reads back: tags, per-model metric names, run statuses.

Trials and trackers write them; report, compare, lossless, sweep results and analyses read them.
Defined once here so a writer and its readers cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from ddcore.errors import DDError


class Status:
    """MLflow run statuses ddorch sets or looks for (KILLED: interrupted; a trial stopped early on purpose
    is FINISHED, tagged `Tag.STOPPED_EARLY`)."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class Tag:
    """Run tags. `ddorch.lossless.<method>` holds a lossless search's summary line per method."""

    PARENT = "mlflow.parentRunId"  # MLflow's own nesting tag
    DATASET = "ddorch.dataset"
    METHOD = "ddorch.method"
    PRESET = "ddorch.preset"
    STAGE = "ddorch.stage"  # e.g. "experts"
    IPC = "ddorch.ipc"
    FAILURE = "ddorch.failure"  # why a run FAILED
    STOPPED = "ddorch.stopped"  # why a run was stopped: early on purpose (FINISHED) or interrupted (KILLED)
    STOPPED_EARLY = "ddorch.stopped_early"  # "true" on a FINISHED run a scheduler or search stopped early
    STOPPED_AT = "ddorch.stopped_at_iteration"  # the distillation iteration it had reached
    # MLflow's own tags, which its UI shows: where a run came from, and its description
    GIT_COMMIT = "mlflow.source.git.commit"
    SOURCE_NAME = "mlflow.source.name"  # the command line that recorded the run
    SOURCE_TYPE = "mlflow.source.type"
    USER = "mlflow.user"
    NOTE = "mlflow.note.content"  # the run's description: what it is and how to reproduce it
    VERSIONS = "ddorch.versions"
    SWEEP = "ddorch.sweep"  # a sweep's parent run: the sweep's name
    EXPERIMENT = "ddorch.experiment"  # the experiment preset a sweep ran
    TRIAL_ID = "ddorch.trial_id"  # Ray Tune's trial id on a sweep's child run
    NODE_ID = "ddorch.node_id"
    LOSSLESS = "ddorch.lossless"  # a lossless search's parent run: its settings key
    TRIAL_KEY = "ddorch.trial_key"  # a lossless or sweep trial: the hash of its settings (trial.trial_key)
    SUPERSEDED = "ddorch.superseded"  # a sweep child whose trial id a resumed sweep gave other settings: the new run
    ANALYSIS = "ddorch.analysis"  # an analysis run: its kind
    SOURCE_RUN = "ddorch.source_run"  # an analysis run: the run it analyses
    COMMAND = "ddorch.command"  # the command that reproduces an analysis
    BENCHMARK = "ddorch.benchmark"  # a benchmark row: its name (`ddorch bench`, benchmarks/rows.toml)
    DISTILL_SETS = "ddorch.distill_sets"  # a `run --distill-seeds N` parent: N, its child runs one set each
    DISTILL_SEED = "ddorch.distill_seed"  # such a child: its set's distillation seed
    FROM_CACHE = "ddorch.from_cache"  # a trial that read finished work (set, eval seeds) from this TrialCache folder
    RESUMED_FROM = (
        "ddorch.resumed_from"  # a trial that distilled on from a set its cache kept part-way: "<run> at iteration <n>"
    )
    BF16_FORCED = "ddorch.bf16_forced"  # a trial run in bf16 (--force-bf16) where it is not native: what and where
    CACHE_KEY = "ddorch.cache_key"  # a shared-cache entry (experiment ddorch-cache): its path in the cache folder
    STALE_CLAIM = "ddorch.stale_claim"  # a shared-cache claim ended by a waiter: its holder went silent
    # A trial: which settings layer set each method setting that differs from its preset's, e.g.
    # "iterations: flags, lr_images: --set" (orchestrator.engine.resolve names the layers and their order)
    SETTINGS_FROM = "ddorch.settings_from"


EVAL_ACCURACY = "eval_accuracy"  # stepped: the quick evaluations (one seed) ASHA and the lossless search
# read, and at the last iteration the final set's mean over the eval seeds (what Tune's last report holds)
VAL_EVAL_ACCURACY = "val_eval_accuracy"  # the same on the validation part (`--selection val`)
# What chooses trials, IPCs and checkpoints: the test set (the papers' protocol) or a validation part held
# out of the training images (ddcore `RealDataset.with_validation`).
SELECTIONS = ("test", "val")
SELECTED_ON = {"test": "test set", "val": "validation part"}  # how readers say which one chose
VAL_SIZE = "val_size"  # a run that holds a validation part out: its size and the digest of its indices (params)
VAL_DIGEST = "val_digest"
# A sweep's parent run: the chosen (best) trial's test accuracy, the best test accuracy of all its
# finished trials, and the difference (fractions; the winner's curse when the test set had chosen).
SWEEP_CHOSEN_TEST = "chosen_trial_test_accuracy"
SWEEP_MAX_TEST = "max_test_accuracy_of_trials"
SWEEP_CURSE = "winners_curse"
EVAL_NETWORKS = "eval_networks"  # networks trained on the final set of the first eval model (sequential seeds)


def eval_metric(selection: str) -> str:
    """The stepped metric that chooses under `selection` (ASHA's, the lossless early stop's)."""
    return VAL_EVAL_ACCURACY if selection == "val" else EVAL_ACCURACY


GRID_IMAGE = "synthetic_set"  # stepped image: the all-classes grid at each evaluation and at the end
PREPARE_SECONDS = "prepare_seconds"  # a method's work before distilling (PAD's expert trajectories)
DISTILL_SECONDS = "distill_seconds"
PEAK_MEMORY_MIB = "peak_memory_mib"  # the device's peak while distilling (0 on the CPU)
ITERATIONS_PER_SECOND = "iterations_per_second"


def stopped_early(status: str, tags: dict[str, str]) -> bool:
    """Whether a run was stopped early on purpose: FINISHED and tagged so, or (stores written before
    that tag) KILLED with a stop reason."""
    return tags.get(Tag.STOPPED_EARLY) == "true" or (status == Status.KILLED and Tag.STOPPED in tags)


def run_name(dataset: str, method: str, ipc: int, values: dict | None = None) -> str:
    """What a run is, as MLflow's runs list shows it: `mnist-datadam-ipc10 lr_images=1.0`."""
    shown = " ".join(f"{k}={_short(v)}" for k, v in (values or {}).items() if k != "ipc")
    return f"{dataset}-{method}-ipc{ipc}" + (f" {shown}" if shown else "")


def _short(value) -> str:
    """Three significant digits for sampled floats (0.012345 -> 0.0123); anything else as it is."""
    return str(float(f"{value:.3g}")) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class PerModel:
    """A metric's name for each network: `pattern` with `{model}` filled in (`schema.acc_mean("ConvNetD3")`)."""

    pattern: str

    def __call__(self, model: str) -> str:
        return self.pattern.format(model=model)


def _mean_std(accuracy: str, over: str = "") -> tuple[PerModel, PerModel]:
    """The names of an accuracy's mean and std over seeds (or `over` something else), one rule for all."""
    return PerModel(f"{accuracy}_{{model}}_mean{over}"), PerModel(f"{accuracy}_{{model}}_std{over}")


# The headline: the final set's test accuracy on `model`, mean over the evaluation seeds.
acc_mean, acc_std = _mean_std("acc")
# The same on the validation part, in runs that hold one out (`--selection val`): what chooses there.
val_acc_mean, val_acc_std = _mean_std("val_acc")


def selected_acc(selection: str) -> tuple[PerModel, PerModel]:
    """(mean, std) names of the accuracy that chooses under `selection`."""
    return (val_acc_mean, val_acc_std) if selection == "val" else (acc_mean, acc_std)


# Several distilled sets (`ddorch run --distill-seeds N`, its parent run; ddcore.spread): "over sets" is
# over the N sets' means (the headline), "over networks" over all N x eval-seeds networks pooled. A
# single-set run has none of them: its `acc_{model}_mean` / `_std` are over its networks (one set).
DISTILL_SETS = "distill_sets"


# The std over sets is the population std of the sets' means: how much the distillation seed moves the result.
acc_mean_over_sets, acc_std_over_sets = _mean_std("acc", "_over_sets")
acc_mean_over_networks, acc_std_over_networks = _mean_std("acc", "_over_networks")
# Variance component between sets (fraction squared; ddcore.spread.over_sets).
between_set_var = PerModel("acc_{model}_between_set_var")
within_set_var = PerModel("acc_{model}_within_set_var")


OVER_SETS_SUFFIX = "_mean_over_sets"


@dataclass(frozen=True)
class Headline:
    """A run's accuracy on one network, as any reader shows it: over sets where it has several, else
    over its one set's networks (runs recorded before several sets existed read as one set)."""

    mean: float
    std: float
    sets: int

    def text(self) -> str:
        """`97.00 ± 0.20 over 3 sets` / `97.03 ± 0.15 over networks, 1 set`."""
        spread = f"over {self.sets} sets" if self.sets > 1 else "over networks, 1 set"
        return f"{100 * self.mean:.2f} ± {100 * self.std:.2f} {spread}"


def headline(metrics: dict[str, float], model: str) -> Headline | None:
    """`model`'s headline accuracy in a run's metrics; None when the run has none."""
    if acc_mean_over_sets(model) in metrics:
        sets = int(metrics.get(DISTILL_SETS, 0))
        return Headline(metrics[acc_mean_over_sets(model)], metrics.get(acc_std_over_sets(model), 0.0), sets)
    if acc_mean(model) in metrics:
        return Headline(metrics[acc_mean(model)], metrics.get(acc_std(model), 0.0), 1)
    return None


def evaluated_models(metrics: dict[str, float]) -> list[str]:
    """The networks a run holds a headline accuracy for, sorted (one set or several)."""
    found = set()
    for name in metrics:
        for suffix in ("_mean", OVER_SETS_SUFFIX):
            if name.startswith("acc_") and name.endswith(suffix):
                found.add(name[4 : -len(suffix)])
    return sorted(found)


balanced_acc_mean = PerModel("balanced_acc_{model}_mean")
train_seconds = PerModel("train_seconds_{model}")
flops = PerModel("flops_{model}")
baseline_acc = PerModel("baseline_acc_{model}")
baseline_val_acc = PerModel("baseline_val_acc_{model}")
baseline_train_seconds = PerModel("baseline_train_seconds_{model}")
# Stepped: the mean over seeds at each evaluation checkpoint during distillation.
checkpoint_acc_mean = PerModel("checkpoint_acc_{model}_mean")
checkpoint_val_acc_mean = PerModel("checkpoint_val_acc_{model}_mean")  # the same on the validation part
# The best checkpoint, chosen on the test set (the DataDAM / PAD papers' number): optimistic.
best_checkpoint_acc = PerModel("acc_{model}_best_checkpoint_test_selected")
# With `--selection val`: the test accuracy of the checkpoint the validation part chose (honest).
best_checkpoint_val_selected = PerModel("acc_{model}_best_checkpoint_val_selected")
best_checkpoint_iteration = PerModel("acc_{model}_best_checkpoint_iteration")


def tag_filter(tag: str, value: str) -> str:
    """An MLflow search filter for runs whose `tag` equals `value` (a quote in it is refused in one line:
    MLflow's filter grammar has no escape for it)."""
    if "'" in value or "`" in value:
        raise DDError(f"names cannot contain quotes or backticks: {value!r}")
    return f"tags.`{tag}` = '{value}'"
