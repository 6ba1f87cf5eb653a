"""The accuracy benchmark runner (`ddorch bench`): named rows, run one at a time on idle cores, recorded for good.

A benchmark folder (`benchmarks/` of the repository) holds the rows (`rows.toml`), the lines
measured so far (`results.jsonl`), the tables made from them (`RESULTS.md`, `orchestrator.views.
bench_tables`) and the parts of rows longer than a session (`parts/`). Each row is a full trial
through `orchestrator.engine.trial.run_trial` (the `ddorch run` trial: distil, evaluate, compare), or a
full-data baseline through `ddcore.baseline.full_data_baseline`, logged to MLflow (the folder's
experiment: `benchmarks`, a study's `study-NAME`) and appended to results.jsonl with the machine, the commit, the load average at
start and end, per-seed accuracies and the time split.

A row already in results.jsonl with the same settings (commit-independent) is skipped unless
`rerun` names it. A row starts only when the 1-minute load average is under `max_load` (0.5; override with
`ignore_load`, recorded in the row) and no other run of the folder holds the lock: timed rows never
share the cores. A budget starts no row whose estimate does not fit what is left, except a row that
can go on in parts: then it runs the work that fits (a trial's distillation, until the budget ends
when even that does not fit, then evaluation seeds; a full-data baseline's seeds), each part kept on
disk as it ends; a distillation run alone goes on with the seeds that fit in what is left after it. A
row is recorded once all its seeds are done, over as many runs as that takes. A trial's parts live in
its `orchestrator.store.trial_cache.TrialCache` under the folder's `parts/` (commit them: the next
session may be a new checkout on a new machine), deleted once the row is recorded; a baseline's seeds
in the baseline cache. A PAD row's estimate includes its experts while the cache lacks them; when
they do not fit beside the distillation, the skip line gives the `ddorch experts` command that
trains them alone (into the same cache). `DDORCH_DATA_ROOT` as usual.

A row of `distill_seeds` N > 1 distils N sets (distillation seeds `seed`.. `seed` + N - 1, `seed` its
settings' or 0), each evaluated by `eval_seeds` networks, through `orchestrator.engine.sets.run_sets` (one
parent run, a child per set); each set's parts live in its own cache, so such a row too goes on in
parts (whole sets, or the first unfinished set's part). Its line's `mean` and `std` are the mean and
population std of the sets' means (each over its networks; `ddcore.spread.over_sets`), `per_set`
holds every set's networks, `per_seed` the same flattened set after set, `set_means`, `set_seconds`
(each set's wall time), `mean_over_networks` / `std_over_networks`, and the between- and within-set
variance components. A one-set row's line is as before (`mean` / `std` over its networks).
`compare_lines` gives the difference of two lines with an interval over the sets' means.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import tomllib

from ddcore.errors import DDError, error_line
from ddcore.hardware import machine

EXPERIMENT = "benchmarks"


def _in_folder(name: str) -> property:
    """A file or folder of a `BenchFolder`, by its name there."""
    return property(lambda folder: folder.path / name)


@dataclass(frozen=True)
class BenchFolder:
    """Where a benchmark's rows, results, tables and parts live (the repository's `benchmarks/`), and the
    MLflow experiment its trials' runs go to (a study's own: `orchestrator.engine.study.study_folder`)."""

    path: Path
    experiment: str = EXPERIMENT
    rows = _in_folder("rows.toml")
    results = _in_folder("results.jsonl")
    results_md = _in_folder("RESULTS.md")
    lock = _in_folder(".suite.lock")
    # In the folder, not ~/.cache: a row longer than a session goes on from a new checkout.
    parts = _in_folder("parts")


# Row fields added after rows were first keyed, and their defaults: left out of the key where they hold them.
LATER = {"data_variant": "", "hardware": "", "distill_seeds": 1, "of": "", "analysis": "", "of_key": ""}
KINDS = ("trial", "baseline", "analysis", "search")


@dataclass(frozen=True)
class Row:
    """One measurement. `kind` "trial" distils and evaluates; "baseline" trains on all real data;
    "analysis" analyses the set of the trial row named by `of` (`orchestrator.engine.analyses`, its
    config fields in `settings`); "search" is a lossless-IPC search (`LosslessConfig` fields in `settings`)."""

    name: str
    dataset: str
    method: str = "datadam"
    preset: str | None = None  # the method's preset (None: its default)
    ipc: int = 10
    init: str = "real"
    iterations: int | None = None  # None: the preset's
    eval_model: str = "ConvNetD3"  # DC's ConvNet: the network of the papers' tables
    eval_protocol: str = "dc"
    eval_seeds: int = 3
    eval_epochs: int | None = None  # None: the protocol's (dc: 1000)
    eval_precision: str = "fp32"  # or "bf16": the evaluation forwards (ddcore.evaluate.PRECISIONS)
    kind: str = "trial"
    settings: dict[str, object] = field(default_factory=dict)  # further method settings (`--set`)
    group: str = ""  # the RESULTS.md table it belongs to
    data_variant: str = ""  # the data set's files differ from its release's (e.g. MHIST recompressed to travel)
    hardware: str = ""  # "gpu": a GPU-suite row (benchmarks/gpu_suite.py), apart from the CPU row of its settings
    distill_seeds: int = 1  # distilled sets, each evaluated by `eval_seeds` networks (see the module docstring)
    of: str = ""  # an analysis: the trial row whose set it reads (that row's results line names its MLflow run)
    analysis: str = ""  # an analysis: cross_arch | continual | nas_proxy
    of_key: str = ""  # set by the loader: the key of the row `of` names, so a changed trial re-runs its analyses

    def key(self) -> str:
        """The row's settings without its name, hashed: the same measurement whatever the commit."""
        from ddcore.evaluate import without_later_defaults  # both import torch: only where used
        from orchestrator.engine.trial import settings_key

        # fields added later are left out where they hold their defaults, so earlier rows keep their keys
        values = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("name", "group", "of") and (k not in LATER or v != LATER[k])
        }
        values = without_later_defaults(values)
        return settings_key(values)[:16]

    def command(self) -> str:
        return f"ddorch bench run --rows {self.name}"


def load_rows(path: Path) -> list[Row]:
    """The `[[row]]` tables of a rows file, sources before the analyses that read them (`rows_from`);
    a missing file is a one-line error."""
    if not path.is_file():
        raise DDError(f"no rows file {path}: run from a checkout (its benchmarks/ folder) or give --folder")
    return rows_from(path, read_toml(path).get("row", []))


def read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise DDError(f"{path}: {error}") from None


# Keys an analysis row may not give: it takes them from the trial it reads, or the loader sets them.
FROM_SOURCE = ("dataset", "ipc", "of_key")


def rows_from(path: Path, tables: list[dict]) -> list[Row]:
    """Rows from `[[row]]` tables, in dependency order (each analysis after the trial it reads, else
    the file's order). A key that is no `Row` field, a missing name or dataset, an unknown kind, an
    `of` naming no trial row, a cycle of `of` and settings its kind does not take are one-line errors
    naming the file and the row."""
    known = {f.name for f in fields(Row)} - {"of_key"}
    by_name: dict[str, dict] = {}
    for number, table in enumerate(tables, 1):
        where = f"{path}, row {number} ({table.get('name', 'no name')})"
        unknown = sorted(set(table) - known)
        if unknown:
            raise DDError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        analysis = table.get("kind") == "analysis"
        needed = {"name", "of", "analysis"} if analysis else {"name", "dataset"}
        missing = sorted(needed - set(table))
        if missing:
            raise DDError(f"{where}: a {table.get('kind', 'trial')} row needs {', '.join(missing)} (missing)")
        if table.get("kind", "trial") not in KINDS:
            raise DDError(f"{where}: unknown kind {table['kind']!r}; kinds: {', '.join(KINDS)}")
        given = sorted(set(table) & set(FROM_SOURCE)) if analysis else ["of"] if "of" in table else []
        if given:
            raise DDError(
                f"{where}: {', '.join(given)} " + ("come(s) from the row it reads" if analysis else "is for analyses")
            )
        if table["name"] in by_name:
            raise DDError(f"{path}: row name(s) {table['name']} given more than once")
        by_name[table["name"]] = table
    rows: dict[str, Row] = {}
    for name in _dependency_order(path, by_name):
        table = by_name[name]
        source = rows.get(table.get("of", ""))
        if source is not None:
            if source.kind != "trial":
                raise DDError(
                    f"{path}, row {name}: of = {source.name!r} is a {source.kind} row; an analysis reads a trial"
                )
            table = {**table, "dataset": source.dataset, "ipc": source.ipc, "of_key": source.key()}
        row = Row(**table)
        check_settings(row, f"{path}, row {name}")
        rows[name] = row
    return list(rows.values())


def _dependency_order(path: Path, tables: dict[str, dict]) -> list[str]:
    """Row names with every `of` before the row naming it, otherwise in the file's order."""
    ordered: list[str] = []
    for name in tables:
        chain = [name]
        while (source := tables[chain[-1]].get("of")) and source not in ordered:
            if source not in tables:
                raise DDError(f"{path}, row {chain[-1]}: of = {source!r} names no row; rows: {', '.join(tables)}")
            if source in chain:
                cycle = " -> ".join([*chain[chain.index(source) :], source])
                raise DDError(f"{path}, row {name}: a cycle in `of`: {cycle}")
            chain.append(source)
        ordered += [n for n in reversed(chain) if n not in ordered]
    return ordered


def check_settings(row: Row, where: str) -> None:
    """An analysis's or a search's `settings` checked against its config class (one line naming the field)."""
    if row.kind not in ("analysis", "search"):
        return
    try:
        config = analysis_config(row) if row.kind == "analysis" else search_config(row)
        if row.kind == "search":
            config.validate()
    except (TypeError, DDError) as error:  # TypeError: a settings key the config class lacks
        raise DDError(f"{where}: {error}") from None


def analysis_config(row: Row):
    """An analysis row's config (`orchestrator.engine.analyses.ANALYSES`), from its `settings`."""
    from orchestrator.engine.analyses import ANALYSES

    if row.analysis not in ANALYSES:
        raise DDError(f"unknown analysis {row.analysis!r}; analyses: {', '.join(ANALYSES)}")
    config_class = ANALYSES[row.analysis][0]
    return config_class(**_config_values(row))


def search_config(row: Row, tracking_uri: str | None = None, device: str = "auto"):
    """A search row's `orchestrator.engine.lossless.LosslessConfig`: its `settings`, on the row's data set."""
    from orchestrator.engine.lossless import LosslessConfig

    return LosslessConfig(dataset=row.dataset, tracking_uri=tracking_uri, device=device, **_config_values(row))


def _config_values(row: Row) -> dict:
    """A row's `settings` as config fields: TOML arrays become the tuples the frozen configs hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in row.settings.items()}


def select(rows: list[Row], names: str | None) -> list[Row]:
    """The rows named (comma-separated; all when None), in the order given."""
    if not names:
        return rows
    known = {row.name: row for row in rows}
    unknown = [n for n in names.split(",") if n not in known]
    if unknown:
        raise DDError(f"unknown row(s) {', '.join(unknown)}; `ddorch bench list` shows them")
    return [known[n] for n in names.split(",")]


def load_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append(line: dict, path: Path) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(line) + "\n")


def pending(rows: list[Row], results: list[dict], rerun: frozenset[str] = frozenset()) -> list[Row]:
    """The rows still to run: those with no result of the same settings and those named in `rerun`,
    each settings once (a study's second row of the same settings reads the first one's line)."""
    done = {r["key"] for r in results}
    todo: dict[str, Row] = {}
    for row in rows:
        if row.name in rerun or row.key() not in done:
            todo.setdefault(row.key(), row)
    return list(todo.values())


# --- the time model -------------------------------------------------------------------------------

# Seconds per unit of work (`ddcore.methods.Cost`) on the 2-core development CPU, for estimates when a
# row has no earlier run on this machine (benchmarks/RESULTS.md, "Comparable numbers"): one DataDAM
# iteration at IPC 10 with real batch 64 (1.95 s; its IPC scaling is DataDAM's `cost`). PAD: one
# student step of an iteration at IPC 10 (10 iterations x 20 steps in 273.6 s, iterations 10-20 of a
# first `mnist_pad_ipc10` run on 2026-12-02, stopped; "PAD on MNIST" had 0.94 s on the earlier,
# smaller MNIST network), one epoch of an expert with DSA in one process (4 experts x 6 epochs in
# 6,293 s, benchmarks/logs/experts-2026-12-02*.log), one epoch of a difficulty network with its share
# of the EL2N scoring passes (2 networks x 2 epochs in 23.2 min, same logs); MNIST-sized, as the
# suite's PAD row is.
CPU_UNIT_SECONDS = {
    "datadam_iteration": 1.95,
    # one of the course preset's 50 network steps after an image update: 0.194 s (suite_speeds.py --preset
    # course, 2026-12-04: 11.50 s an iteration, 1.82 s without them; its first trial here took 10.6 s)
    "datadam_network_step": 0.194,
    "pad_student_step": 1.37,
    "expert_epoch": 262.0,
    "difficulty_epoch": 348.0,
}
# One evaluation epoch per synthetic image (1000 epochs x 100 images in 7.4 min), and one full-data
# epoch of ConvNetD3 on 60,000 images at batch 256 (235 steps x 0.89 s), on the same CPU.
CPU_EVAL_EPOCH_IMAGE = 0.0045
CPU_FULL_DATA_EPOCH = 210.0
CPU_THREADS = 2
BASELINE_EPOCHS = 20

# Seconds on a GPU, for the GPU suite's plan (benchmarks/gpu_suite.py, which replaces them by its probe's
# figures once measured) and the studies' dry runs: the first week's H100 (benchmarks/RESULTS.md,
# issues 2 and 3: 31 DataDAM iterations/s at MNIST IPC 10, overhead-bound, so taken for every MNIST
# IPC; ConvNetD3 full-data seeds of 20 epochs in 14.4-23.1 s; MHIST ConvNetD7 seeds in 36.5-44.2 s at
# batch 32). Evaluation and MHIST iterations were not measured there: 4 ms a training step of one
# seed (a batch of at most 256 images; its share when seeds are packed) and 5 MHIST iterations/s are
# guesses, replaced by the probe's figures. So is 6 ms for one of the course setting's network steps
# (a lone ConvNet's SGD step on the synthetic set: about a fifth of an overhead-bound 32 ms MNIST
# iteration, whose ten class batches each take a forward and a backward pass); the probe does not time it.
GPU_FIGURES = {
    "its:mnist": 31.0,
    "its:mhist": 5.0,
    "eval_step": 0.004,
    "epoch:mnist": 1.0,
    "epoch:mhist": 2.0,
    "pad_student_step": 0.01,
    "expert_epoch": 1.5,
    "difficulty_epoch": 2.0,
    "network_step": 0.006,
}
UNKNOWN = math.inf  # the estimate of a row no time model prices (`unpriced` says why): never fits a budget


def gpu_eval_seconds(figures: dict[str, float], images: int, epochs: int) -> float:
    """One network's training: `epochs` x its batches of at most 256 (DC's batch) x one step's time."""
    return epochs * math.ceil(images / 256) * figures["eval_step"]


def gpu_iterations_per_second(figures: dict[str, float], dataset: str, ipc: int) -> float:
    """Measured DataDAM iterations per second (of this IPC, else of the data set); 0 where none is."""
    return figures.get(f"its:{dataset}:ipc{ipc}", figures.get(f"its:{dataset}", 0.0))


def gpu_seconds(row: Row, figures: dict[str, float] = GPU_FIGURES) -> float:
    """A row on a GPU: distillation, then its seeds (`eval_step` is a seed's share of a packed step);
    an analysis's networks; a search's budget; `UNKNOWN` where no figure prices it."""
    from ddcore.data import get_spec

    classes = get_spec(row.dataset).num_classes
    if row.kind in ("analysis", "search"):
        trainings = analysis_trainings(row) if row.kind == "analysis" else None
        if trainings is None:
            return 60 * search_minutes(row) if row.kind == "search" else UNKNOWN
        return sum(count * gpu_eval_seconds(figures, images, epochs) for count, images, epochs in trainings)
    if row.kind == "baseline":
        return row.eval_seeds * BASELINE_EPOCHS * figures.get(f"epoch:{row.dataset}", UNKNOWN)
    config = trial_config(row).method_config
    if row.method == "datadam":
        speed = gpu_iterations_per_second(figures, row.dataset, row.ipc)
        distill = config.iterations / speed if speed else UNKNOWN
        if config.network_steps:  # the course setting's
            distill += config.iterations * config.network_steps * figures["network_step"]
    elif row.method == "pad":
        distill = config.iterations * config.syn_steps * figures["pad_student_step"]
        distill += config.num_experts * config.trajectory_epochs * figures["expert_epoch"]
    else:
        distill = 0.0 if row.method == "random" else UNKNOWN
    epochs = row.eval_epochs or 1000
    return row.distill_seeds * (distill + row.eval_seeds * gpu_eval_seconds(figures, classes * row.ipc, epochs))


def analysis_trainings(row: Row) -> list[tuple[int, int, int]] | None:
    """An analysis's networks as (how many, images, epochs) trainings, for both time models; None
    where it has no model (`unpriced` says why)."""
    from ddcore.data import get_spec
    from ddcore.evaluate import get_protocol

    config, spec = analysis_config(row), get_spec(row.dataset)
    images = row.ipc * spec.num_classes
    if row.analysis == "cross_arch":  # each network on the set and on a random real subset of its size
        epochs = config.epochs or get_protocol(config.eval_protocol or spec.eval_protocol).epochs
        return [(2 * len(config.models) * config.seeds, images, epochs)]
    if row.analysis == "nas_proxy" and config.full_per_class:  # each network on the set and on real images
        networks = len(config.pool) * config.seeds
        return [
            (networks, images, config.proxy_epochs or get_protocol("dc").epochs),
            (networks, config.full_per_class * spec.num_classes, config.full_epochs or BASELINE_EPOCHS),
        ]
    return None


def search_minutes(row: Row) -> float:
    """A search's length is its budget (`budget_hours`); without one, `UNKNOWN`."""
    hours = row.settings.get("budget_hours")
    return 60 * hours if hours else UNKNOWN


def unpriced(row: Row) -> str:
    """Why a row has no estimate ("" when it has one)."""
    if row.kind == "search" and not row.settings.get("budget_hours"):
        return "a search runs until it answers: give it settings.budget_hours"
    if row.kind == "analysis" and analysis_trainings(row) is None:
        if row.analysis == "nas_proxy":
            return "a NAS proxy on all real images has no time model: give it settings.full_per_class"
        return f"no time model for the {row.analysis} analysis"
    return ""


def analysis_minutes(row: Row) -> float:
    """An analysis or search on this CPU: its networks by the image-epoch figure (`UNKNOWN` if unpriced)."""
    if row.kind == "search":
        return search_minutes(row)
    trainings = analysis_trainings(row)
    if trainings is None:
        return UNKNOWN
    return sum(count * images * epochs * CPU_EVAL_EPOCH_IMAGE for count, images, epochs in trainings) / 60


def priced(units: dict[str, float], seconds: dict[str, float] = CPU_UNIT_SECONDS) -> float:
    """Seconds of a method's units of work (`ddcore.methods.Cost`); a unit never measured is an error."""
    missing = sorted(set(units) - set(seconds))
    if missing:
        raise DDError(f"no seconds per {', '.join(missing)} in the benchmark time model (CPU_UNIT_SECONDS)")
    return sum(count * seconds[unit] for unit, count in units.items())


def evaluation_seconds(row: Row, classes: int) -> float:
    """One evaluation seed by the dry runs' image-epoch model (`orchestrator.engine.plan.Calibration`)."""
    from orchestrator.engine.plan import Calibration

    calibration = Calibration({}, train_per_image=CPU_EVAL_EPOCH_IMAGE, test_seconds=0.0, threads=CPU_THREADS)
    return calibration.evaluation_seconds(row.ipc, classes, row.eval_epochs or 1000)


@dataclass(frozen=True)
class WorkLeft:
    """A row's work left, in minutes: what comes before its seeds (a trial's distillation, unless
    done) and one seed still to run; `seeds_done`: its seeds already kept on disk; `set_kept`: a
    trial's distilled set is kept on disk."""

    upfront: float
    per_seed: float
    seeds_done: int
    set_kept: bool = False
    prepare: float = 0.0  # of `upfront`: PAD's experts (and difficulty scores) not in the cache yet
    reached: tuple[int, int] | None = None  # a distillation kept part-way: (iteration, iterations)

    def minutes(self, seeds: int) -> float:
        return self.upfront + self.per_seed * (seeds - self.seeds_done)

    def kept(self, seeds: int) -> str:
        """What earlier parts left on disk, for `bench list` ("" when nothing)."""
        parts = ["set"] if self.set_kept else []
        if self.reached:
            parts.append("the set at iteration {} of {}".format(*self.reached))
        if self.seeds_done:
            parts.append(f"{self.seeds_done} of {seeds} seeds")
        return " + ".join(parts) + " kept" if parts else ""


def work_left(row: Row, results: list[dict], here: str, parts: Path) -> WorkLeft:
    """What the row has done and how long the rest takes: a seed as long as the seeds it kept, and a
    distillation kept part-way at the pace it kept here (this machine's speed today, which varies 1.5x
    between sessions), else as in its last whole run here, else as the CPU figures above and the
    method's `cost` say."""
    earlier = _earlier(row, results, here)
    if row.kind in ("analysis", "search"):  # one piece, never in parts
        return WorkLeft(earlier["wall_seconds"] / 60 if earlier else analysis_minutes(row), 0.0, 0)
    if row.kind == "baseline":
        cached = _cached_runs(row)
        last = statistics.fmean(earlier["train_seconds_per_seed"]) if earlier else None
        formula = BASELINE_EPOCHS * CPU_FULL_DATA_EPOCH
        return WorkLeft(0.0, _seed_seconds(cached, last, formula) / 60, len(cached))
    from ddcore.data import get_spec
    from ddcore.methods import get_method

    cache, trial = _trial_cache(row, parts)
    cached, set_kept = _cached_trial_runs(row, cache, trial), cache.has_distilled()
    cost = get_method(row.method).cost(trial.method_config, row.dataset)
    iterations, (reached, reached_seconds, reached_on) = trial.method_config.iterations, cache.progress_reached()
    # the preparation by the cache, not by an earlier run: that one may have found the experts
    # cached, and a new machine starts with an empty cache
    prepare = 0.0 if set_kept or reached else priced(cost.preparation)
    if set_kept:
        distill = 0.0
    elif reached and reached_on == here:
        distill = reached_seconds / reached * (iterations - reached)
    elif earlier:
        distill = earlier["distill_seconds"] * (1 - reached / iterations)
    else:
        distill = (iterations - reached) * priced(cost.per_iteration)
    last = earlier["eval_seconds"] / earlier["seeds"] if earlier else None
    per_seed = _seed_seconds(cached, last, evaluation_seconds(row, get_spec(row.dataset).num_classes)) / 60
    progress = (reached, iterations) if reached else None
    return WorkLeft((prepare + distill) / 60, per_seed, len(cached), set_kept, prepare / 60, progress)


def set_rows(row: Row) -> list[Row]:
    """A row's sets as one-set rows of the same name (so each set's parts have a folder of their own):
    the row itself for its first set, then its distillation seed + 1, + 2, ..."""
    first = row.settings.get("seed", trial_config(row).method_config.seed) if row.distill_seeds > 1 else 0
    one = replace(row, distill_seeds=1)
    return [one, *(replace(one, settings={**row.settings, "seed": first + i}) for i in range(1, row.distill_seeds))]


def row_minutes(row: Row, results: list[dict], here: str, parts: Path) -> float:
    """The minutes a row's work left takes: its sets' together."""
    return sum(work_left(one, results, here, parts).minutes(one.eval_seeds) for one in set_rows(row))


def part_that_fits(row: Row, results: list[dict], here: str, left: float, parts: Path) -> Row | None:
    """The part of a row longer than the `left` minutes that fits: for one set, `partial_row`; for
    several, the sets that fit whole (a `distill_seeds` smaller than the row's; the sets done before
    are read from their parts), else the first unfinished set's part; None when nothing fits."""
    spent, new_work = 0.0, False
    for count, one in enumerate(set_rows(row)):
        work = work_left(one, results, here, parts)
        minutes = work.minutes(one.eval_seeds)
        if spent + minutes > left:
            if new_work:
                return replace(row, distill_seeds=count)
            return partial_row(one, work, left - spent)
        spent, new_work = spent + minutes, new_work or minutes > 0
    return row


def distillation_pauses(row: Row, results: list[dict], here: str, left: float, parts: Path) -> bool:
    """Whether a one-set trial longer than the `left` minutes may distil until they end, its set kept
    part-way for the next run (its preparation, PAD's experts, must fit: they are kept only whole)."""
    if row.kind != "trial" or row.distill_seeds > 1:
        return False
    work = work_left(row, results, here, parts)
    return not work.set_kept and work.prepare < left


def distillation_alone(row: Row, part: Row) -> bool:
    """Whether the part of a one-set trial row is its distillation without a seed (the budget priced none
    after it; it may end sooner than priced)."""
    return part != row and row.kind == "trial" and row.distill_seeds == 1 and part.eval_seeds == 0


def partial_row(row: Row, work: WorkLeft, left: float) -> Row | None:
    """A row longer than the budget left makes progress in parts: the same row with as many more
    seeds as fit after its upfront work, or a trial's distillation alone (each part is kept on disk
    as it ends, and the next run starts after it); None when nothing fits."""
    if work.upfront > left:
        return None
    more = int((left - work.upfront) // work.per_seed) if work.per_seed > 0 else 0
    if more < 1 and work.upfront == 0:
        return None
    return replace(row, eval_seeds=min(row.eval_seeds, work.seeds_done + more))


def _seed_seconds(kept: dict, last: float | None, formula: float) -> float:
    if kept:
        return statistics.fmean(run.train_seconds for run in kept.values())
    return formula if last is None else last


def _earlier(row: Row, results: list[dict], here: str) -> dict | None:
    """The last result of the row's settings on this machine, run alone (not as one of a study's parts
    run side by side on a Ray cluster: `ray_cluster`)."""
    return next(
        (r for r in reversed(results) if r["key"] == row.key() and r["machine"] == here and not r.get("ray_cluster")),
        None,
    )


def _cached_runs(row: Row) -> dict:
    from ddcore.baseline import cached_runs

    return cached_runs(row.dataset, row.eval_model, tuple(range(row.eval_seeds)))


def trial_config(row: Row, device: str = "auto"):
    """The `orchestrator.engine.trial.TrialConfig` of a trial row (`resolve_trial`: the row's settings are `--set`)."""
    from ddcore.evaluate import EvalSpec
    from orchestrator.engine.resolve import Layers, resolve_trial

    evaluation = EvalSpec(
        (row.eval_model,), row.eval_seeds, row.eval_protocol, row.eval_epochs, precision=row.eval_precision
    )
    flags = {"init": row.init, "iterations": row.iterations, "device": device}
    layers = Layers(flags=flags, settings=row.settings)
    return resolve_trial(row.method, row.dataset, row.preset, row.ipc, evaluation, layers, baseline=False)


def _trial_cache(row: Row, parts: Path, device: str = "auto"):
    """A trial row's cache under `parts` (by its name and distillation) and its TrialConfig; a part of
    a row (fewer seeds) has the same cache as the whole row."""
    from orchestrator.engine.trial import distillation_key
    from orchestrator.store.trial_cache import TrialCache

    trial = trial_config(row, device)
    key = distillation_key(trial)
    return TrialCache(parts / f"{row.name}-{key}", key), trial


def _cached_trial_runs(row: Row, cache, trial) -> dict:
    """The final evaluation seeds of the row kept in its cache, by seed."""
    from orchestrator.engine.trial import network_fingerprint

    fingerprint = network_fingerprint(trial, row.eval_model)
    return cache.seed_runs(row.eval_model, fingerprint, trial.protocol(), tuple(range(row.eval_seeds)))


# The `ddorch experts` flags of PAD settings a row may set (the command's defaults are the preset's).
EXPERT_FLAGS = {
    "model": "--model",
    "num_experts": "--num-experts",
    "trajectory_epochs": "--epochs",
    "lr_teacher": "--lr",
    "expert_batch": "--batch-size",
    "difficulty_score": "--score",
    "seed": "--seed",
}


def experts_command(row: Row, device: str = "cpu") -> str:
    """The command that trains a PAD row's experts alone, into the cache the row reads."""
    flags = [f"{EXPERT_FLAGS[name]} {value}" for name, value in row.settings.items() if name in EXPERT_FLAGS]
    if row.settings.get("data_schedule") is False:
        flags.append("--no-schedule")
    return " ".join(["ddorch experts --dataset", row.dataset, *flags, "--in-process --device", device])


def preparation_note(row: Row, work: WorkLeft, device: str) -> str:
    """For a row whose estimate includes PAD's experts: how long they take and how to train them alone."""
    if not work.prepare:
        return ""
    return f"; {work.prepare:.0f} min of it trains the experts, alone: {experts_command(row, device)}"


def kept_text(row: Row, results: list[dict], here: str, parts: Path) -> str:
    """What earlier runs of a pending row left on disk, its sets' together ("" when nothing)."""
    return "; ".join(filter(None, (work_left(one, results, here, parts).kept(row.eval_seeds) for one in set_rows(row))))


def list_lines(rows: list[Row], results: list[dict], parts: Path, device: str) -> list[str]:
    """`bench list`: each row's state (done or pending, with what its parts kept), estimate and group."""
    here, done = machine(), {r["key"] for r in results}
    lines = []
    for row in rows:
        work = work_left(set_rows(row)[0], results, here, parts)
        state = "done" if row.key() in done else "pending"
        kept = kept_text(row, results, here, parts) if state == "pending" else ""
        lines.append(
            f"{row.name:36} {state:8} ~{minutes_text(row_minutes(row, results, here, parts)):>5} min  {row.group}"
            + (f" ({kept})" if kept else "")
            + (preparation_note(row, work, device) if state == "pending" else "")
        )
    return lines


def check_device(device: str) -> bool:
    """An unknown device, or a GPU asked for where none is visible, refused before any row starts;
    whether rows run on a GPU here."""
    from ddcore.runtime import resolve_device

    return resolve_device(device).type != "cpu"


# --- the cores: one run at a time, on idle cores --------------------------------------------------


def check_load(
    max_load: float, ignore: bool, loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg
) -> float:
    """The 1-minute load average; refuses (one line) above `max_load` unless `ignore`."""
    load = loadavg()[0]
    if load > max_load and not ignore:
        raise DDError(
            f"load average {load:.2f} is above {max_load}: timed rows run on idle cores "
            "(wait, or --ignore-load, which is recorded in the row)"
        )
    return load


def settle(
    max_load: float,
    loadavg: Callable[[], tuple[float, float, float]],
    sleep: Callable[[float], None] = time.sleep,
    patience_seconds: float = 300,
) -> None:
    """Wait (at most `patience_seconds`) for the load a finished row leaves to decay under `max_load`:
    the 1-minute average counts the row's own threads for a minute or two after it ends."""
    waited = 0.0
    while loadavg()[0] > max_load and waited < patience_seconds:
        sleep(15)
        waited += 15


@contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """One benchmark run at a time on this machine (a second one fails at once instead of sharing the cores)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DDError(f"another benchmark run holds {lock}; rows never run two at once") from None
        yield


# --- running a row --------------------------------------------------------------------------------


def run_row(
    row: Row,
    tracking_uri: str | None,
    device: str,
    folder: BenchFolder,
    results: list[dict] = (),
    deadline: float | None = None,
) -> dict:
    """Run one row; the measured values (without the bookkeeping `record` adds). A trial's parts are
    kept under `folder.parts` (the GPU suite keeps them apart from the repository's), its run goes to
    `folder.experiment`; an analysis finds the run it reads in `results`. With `deadline`, a one-set
    trial's distillation pauses there, its set kept (`TrialPaused`)."""
    if row.kind == "baseline":
        return _run_baseline(row, device)
    if row.kind == "analysis":
        return _run_analysis(row, tracking_uri, device, results)
    if row.kind == "search":
        return _run_search(row, tracking_uri, device)
    if row.distill_seeds > 1:
        return _run_sets(row, tracking_uri, device, folder)
    return _run_trial(row, tracking_uri, device, folder, deadline)


def _run_baseline(row: Row, device: str) -> dict:
    from ddcore.baseline import baseline_protocol, full_data_baseline
    from ddcore.data import load_dataset

    data = load_dataset(row.dataset)
    protocol = baseline_protocol(row.dataset)
    result, from_cache = full_data_baseline(
        data, row.eval_model, tuple(range(row.eval_seeds)), protocol, device, progress=True
    )
    return {
        "protocol": protocol.name,
        "per_seed": [run.accuracy for run in result.runs],
        "train_seconds_per_seed": [run.train_seconds for run in result.runs],
        "from_cache": from_cache,
        "distill_seconds": 0.0,
        "eval_seconds": sum(run.train_seconds for run in result.runs),
    }


def source_line(row: Row, results: list[dict]) -> dict | None:
    """The results line of the trial an analysis reads (the last of its settings), or None."""
    return next((r for r in reversed(results) if r["key"] == row.of_key), None)


def _run_analysis(row: Row, tracking_uri: str | None, device: str, results: list[dict]) -> dict:
    """The analysis as `ddorch cross-arch | continual | nas-proxy RUN` runs it, on the set of the run its
    source row's line names (a several-set row: its first set's)."""
    from orchestrator.engine.analyses import analyse_run

    if tracking_uri and tracking_uri.startswith(FOLDER_STORE):
        raise DDError(f"{row.name}: an analysis reads its trial's run from MLflow, not from {tracking_uri}")
    source = source_line(row, results)
    if source is None:
        raise DDError(f"{row.name}: {row.of} has no result yet; run it first")
    source_run = (source.get("set_runs") or [source["mlflow_run"]])[0]
    config = replace(analysis_config(row), device=device)
    started = time.perf_counter()
    outcome = analyse_run(row.analysis, source_run, config, tracking_uri, progress=True)
    table = outcome.result.table()
    return {
        "table": asdict(table),
        "metrics": outcome.result.metrics(),
        "mlflow_run": outcome.run_id,
        "source_run": source_run,
        "eval_seconds": time.perf_counter() - started,
    }


def _run_search(row: Row, tracking_uri: str | None, device: str) -> dict:
    """A lossless-IPC search (`orchestrator.engine.lossless.search_lossless`, as `ddorch lossless` runs it)."""
    from orchestrator.engine.lossless import search_lossless

    report = search_lossless(search_config(row, tracking_uri, device), progress=True)
    return {
        "smallest_ipc": {m: r.smallest_lossless for m, r in report.results.items()},
        "answers": {m: r.summary() for m, r in report.results.items()},
        "target_accuracy": report.target.accuracy,
        "mlflow_run": report.parent_run_id,
        "budget_spent": report.budget_spent,
    }


FOLDER_STORE = "folder:"  # a tracking URI `folder:PATH`: runs written to PATH, for machines without MLflow


def start_tracker(
    tracking_uri: str | None, experiment: str, row: Row, name: str | None = None, tags: dict[str, str] | None = None
):
    """The row's run (`name`, `tags`: a set's child run): in MLflow's `experiment`, or in a folder
    (`orchestrator.store.tracking.FolderTracker`) for `folder:PATH`."""
    from orchestrator.store.run_schema import Tag
    from orchestrator.store.tracking import FolderTracker, Tracker

    tags = {Tag.BENCHMARK: row.name, **(tags or {})}
    if tracking_uri and tracking_uri.startswith(FOLDER_STORE):
        return FolderTracker.start(tracking_uri.removeprefix(FOLDER_STORE), name or row.name, tags)
    return Tracker.start(tracking_uri, experiment, run_name=name or row.name, tags=tags)


def _run_trial(row: Row, tracking_uri: str | None, device: str, folder: BenchFolder, deadline: float | None) -> dict:
    from orchestrator.engine.trial import run_trial

    cache, trial = _trial_cache(row, folder.parts, device)
    tracker = start_tracker(tracking_uri, folder.experiment, row)
    started = time.perf_counter()
    result = run_trial(trial, tracker, progress=True, cache=cache, deadline=deadline)
    wall = time.perf_counter() - started
    runs = result.evaluations[row.eval_model].runs if row.eval_seeds else []  # 0: a distillation-only part
    overhead = wall - result.distill_seconds - result.prepare_seconds  # evaluation, artefacts, logging
    return {
        "protocol": trial.protocol().name,
        "preset": trial.preset,
        "network": trial.method_config.model,
        "iterations": trial.method_config.iterations,
        "per_seed": [run.accuracy for run in runs],
        "distill_seconds": result.distill_seconds,
        "prepare_seconds": result.prepare_seconds,
        # parts of a row run in several runs: then only the seeds' own training time is known
        "eval_seconds": sum(run.train_seconds for run in runs) if result.from_cache else overhead,
        "from_cache": result.from_cache,
        "mlflow_run": result.run_id,
    }


def _run_sets(row: Row, tracking_uri: str | None, device: str, folder: BenchFolder) -> dict:
    """A row of several sets through `orchestrator.engine.sets.run_sets`: a parent run, a child per set, each
    set's parts in its own cache."""
    from orchestrator.engine.sets import run_sets
    from orchestrator.store.run_schema import Tag

    caches = {}
    for one in set_rows(row):
        cache, trial = _trial_cache(one, folder.parts, device)
        caches[trial.method_config.seed] = cache
    trial = trial_config(row, device)
    parent = start_tracker(tracking_uri, folder.experiment, row)

    def start_child(one, seed: int):
        tags = {Tag.PARENT: parent.run_id, Tag.DISTILL_SEED: str(seed)}
        return start_tracker(tracking_uri, folder.experiment, row, f"{row.name} seed={seed}", tags)

    result = run_sets(trial, row.distill_seeds, parent, start_child, cache=lambda one: caches[one.method_config.seed])
    per_set = [[run.accuracy for run in s.evaluations[row.eval_model].runs] for s in result.sets]
    from_cache = any(s.from_cache for s in result.sets)
    return {
        "protocol": trial.protocol().name,
        "preset": trial.preset,
        "network": trial.method_config.model,
        "iterations": trial.method_config.iterations,
        "per_set": per_set,
        "per_seed": [accuracy for networks in per_set for accuracy in networks],
        "set_seeds": result.seeds,
        "set_seconds": result.set_seconds,
        "distill_seconds": sum(s.distill_seconds for s in result.sets),
        "prepare_seconds": sum(s.prepare_seconds for s in result.sets),
        "eval_seconds": sum(run.train_seconds for s in result.sets for run in s.evaluations[row.eval_model].runs)
        if from_cache
        else sum(result.set_seconds) - sum(s.distill_seconds + s.prepare_seconds for s in result.sets),
        "from_cache": from_cache,
        "mlflow_run": result.run_id,
        "set_runs": [s.run_id for s in result.sets],
    }


# --- recording ------------------------------------------------------------------------------------


def over_sets_fields(per_set: list[list[float]]) -> dict:
    """A several-set line's summaries (`ddcore.spread.over_sets`): `mean` / `std` over the sets' means."""
    from ddcore.spread import over_sets

    s = over_sets(per_set)
    return {
        "seeds": s.networks,
        "mean": s.mean_over_sets,
        "std": s.std_over_sets,
        "set_means": list(s.set_means),
        "mean_over_networks": s.mean_over_networks,
        "std_over_networks": s.std_over_networks,
        "between_set_var": s.between_set_var,
        "within_set_var": s.within_set_var,
    }


def line_sets(line: dict) -> list[list[float]]:
    """A results.jsonl line's accuracies by set (a line of one set: its networks as one set)."""
    return line.get("per_set") or [line["per_seed"]]


def compare_lines(a: dict, b: dict, confidence: float = 0.95):
    """Row A minus row B (`ddcore.spread.Difference`; `.text()` for prose): Welch's interval over the
    sets' means when both have several sets, else over the networks only, which it says."""
    from ddcore.spread import difference

    return difference(line_sets(a), line_sets(b), confidence)


def record(row: Row, measured: dict, load_start: float, load_end: float, ignored_load: bool, wall: float) -> dict:
    """The results.jsonl line: the row's settings, where and on what it ran, and what it measured."""
    import torch

    from orchestrator.store.tracking import git_commit

    per_seed = measured.get("per_seed")  # none for an analysis or a search
    if "per_set" in measured:
        spread = over_sets_fields(measured["per_set"])
    elif per_seed:
        spread = {"seeds": len(per_seed), "mean": statistics.fmean(per_seed), "std": statistics.pstdev(per_seed)}
    else:
        spread = {}
    return {
        **asdict(row),
        "key": row.key(),
        "commit": git_commit(),
        "machine": machine(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **measured,
        **spread,
        "wall_seconds": wall,
        "load_start": load_start,
        "load_end": load_end,
        "ignored_load": ignored_load,
    }


# --- the runner -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """What `ddorch bench run` was asked for."""

    rerun: frozenset[str] = frozenset()  # rows run again though done, by name
    budget_minutes: float | None = None
    max_load: float = 0.5
    ignore_load: bool = False
    tracking_uri: str | None = None
    device: str = "auto"
    rerun_hint: bool = True  # a done line names `bench run --rerun` (a study's rows: `study run --rerun`)


# (row or part, tracking URI, device, deadline) -> measured values; with a deadline (`time.monotonic()`), a
# distillation that reaches it keeps its set and raises `TrialPaused`
Runner = Callable[[Row, "str | None", str, "float | None"], dict]


def run_suite(
    rows: list[Row],
    options: RunOptions,
    folder: BenchFolder,
    loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg,
    runner: Runner | None = None,
    sleep: Callable[[float], None] = time.sleep,
    failed: list[str] | None = None,
) -> list[dict]:
    """Run the pending rows one after the other within the budget; the lines appended. With `failed`, a
    row that raises is named there and the others go on (those reading it are skipped); without, it stops them."""
    from orchestrator.engine.trial_hooks import TrialPaused

    def run_here(row: Row, tracking_uri: str | None, device: str, deadline: float | None = None) -> dict:
        return run_row(row, tracking_uri, device, folder, load_results(folder.results), deadline)

    runner = runner or run_here
    results = load_results(folder.results)
    here, parts = machine(), folder.parts
    todo = pending(rows, results, options.rerun)
    suite_started = time.monotonic()
    deadline = suite_started + 60 * options.budget_minutes if options.budget_minutes else None
    appended, ran = [], False
    with exclusive(folder.lock):
        for position, row in enumerate(todo, 1):
            if row.of and source_line(row, results + appended) is None:
                print(f"skip {row.name}: it reads {row.of}, which has no result", flush=True)
                continue
            estimate = row_minutes(row, results, here, parts)
            left = None if deadline is None else (deadline - time.monotonic()) / 60
            part, stop = row, None
            if left is not None and estimate > left:
                part = part_that_fits(row, results, here, left, parts)
                if part is None and distillation_pauses(row, results, here, left, parts):
                    part, stop = replace(row, eval_seeds=0), deadline
                if part is None:
                    work = work_left(set_rows(row)[0], results, here, parts)
                    print(
                        f"skip {row.name}: estimate {minutes_text(estimate)} min, {left:.0f} min of the budget left"
                        + preparation_note(row, work, options.device)
                        + (f" ({unpriced(row)})" if math.isinf(estimate) else ""),
                        flush=True,
                    )
                    continue
                print(
                    f"{row.name}: estimate {estimate:.0f} min, {left:.0f} min of the budget left: "
                    + ("the distillation until the budget ends, its set kept" if stop else part_text(row, part))
                    + " now (cached parts read, new ones cached as they end)",
                    flush=True,
                )
            if ran and not options.ignore_load:
                settle(options.max_load, loadavg, sleep)
            load_start = check_load(options.max_load, options.ignore_load, loadavg)
            elapsed = (time.monotonic() - suite_started) / 60
            print(status_line(position, len(todo), row, estimate, elapsed, left, load_start), flush=True)
            started = time.perf_counter()
            try:
                measured = runner(part, options.tracking_uri, options.device, stop)
                if distillation_alone(row, part):  # it ended: the seeds that fit in what is left now
                    more = part_that_fits(row, results + appended, here, (deadline - time.monotonic()) / 60, parts)
                    if more is not None and more.eval_seeds > part.eval_seeds:
                        part, measured = more, runner(more, options.tracking_uri, options.device)
            except TrialPaused as pause:
                print(f"partial {row.name}: {pause}", flush=True)
                break  # the budget has ended
            except Exception as error:
                if failed is None:
                    raise
                print(f"failed {row.name}: {error_line(error)}", flush=True)
                failed.append(row.name)
                continue
            ran = True
            if part != row:  # recorded only whole: a line's mean is over all the row's seeds (and sets)
                seeds = ", ".join(f"{100 * a:.2f}" for a in measured["per_seed"])
                kept = (
                    "the distilled set and " if row.kind == "trial" else ""
                ) + f"{part.eval_seeds} of {row.eval_seeds} seeds"
                print(
                    f"partial {row.name}: {part_text(row, part) if row.distill_seeds > 1 else kept} cached"
                    + (f" ({seeds} %)" if seeds else "")
                    + "; the same command goes on from there"
                    + (f" (commit {parts} for a later checkout)" if row.kind == "trial" else ""),
                    flush=True,
                )
                continue
            line = record(row, measured, load_start, loadavg()[0], options.ignore_load, time.perf_counter() - started)
            append(line, folder.results)
            appended.append(line)
            drop_parts(row, parts)
            took = f"{line['wall_seconds'] / 60:.1f} min" + (" (its last part)" if line.get("from_cache") else "")
            hint = f"; rerun: {row.command()} --rerun" if options.rerun_hint else ""
            print(f"done {row.name}: {outcome_text(row, line)} in {took}{hint}", flush=True)
    return appended


def drop_parts(row: Row, parts: Path) -> None:
    """A recorded trial's parts kept for later runs: not needed any more."""
    if row.kind == "trial":
        for one in set_rows(row):
            shutil.rmtree(_trial_cache(one, parts)[0].folder, ignore_errors=True)


def outcome_text(row: Row, line: dict) -> str:
    """A recorded line in a few words: accuracy over the sets, an analysis's run, a search's answers."""
    if row.kind == "analysis":
        return f"{row.analysis} of {row.of} in run {line['mlflow_run']}"
    if row.kind == "search":
        return "; ".join(f"{method}: {answer}" for method, answer in line["answers"].items())
    over = f" over {row.distill_seeds} sets" if row.distill_seeds > 1 else " (1 set)"
    return f"{100 * line['mean']:.2f} ± {100 * line['std']:.2f} %{over}"


def minutes_text(minutes: float) -> str:
    """`12`, `0.4` or `?` (no estimate)."""
    return "?" if math.isinf(minutes) else f"{minutes:.1f}" if minutes < 10 else f"{minutes:.0f}"


def part_text(row: Row, part: Row) -> str:
    """What a part of a row does: `seeds 0-1 of 3`, `the distillation`, `sets 1-2 of 3`, `the set of
    distillation seed 2: seeds 0-0 of 3`."""
    if part.distill_seeds > 1:
        return f"sets 1-{part.distill_seeds} of {row.distill_seeds}"
    text = f"seeds 0-{part.eval_seeds - 1} of {row.eval_seeds}" if part.eval_seeds else "the distillation"
    if row.distill_seeds > 1:
        text = f"the set of distillation seed {trial_config(part).method_config.seed}: {text}"
    return text


def status_line(
    position: int, count: int, row: Row, estimate: float, elapsed: float, left: float | None, load: float
) -> str:
    """One line as a row starts (minutes); the trial's own progress bars follow while it runs."""
    budget = "no budget" if left is None else f"{left:.0f} min of the budget left"
    return (
        f"row {position} of {count}: {row.name} (estimate {minutes_text(estimate)} min, load {load:.2f}); "
        f"suite elapsed {elapsed:.0f} min, {budget}"
    )
