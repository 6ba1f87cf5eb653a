"""`ddorch report`: one HTML page (self-contained: images embedded as base64) and one Markdown file
(images copied to `images/` next to it, relative links) over runs and sweeps in MLflow.

Contents, each part only when the runs hold it: the setup (store, versions), the full-data
baseline rows, a table per method, the synthetic sets' grids (runs of both inits side by side),
the loss curves, accuracy vs IPC (several IPCs), the cross-architecture matrices, the
continual-learning and NAS-proxy results (`orchestrator.engine.analyses` runs), and the commands that
reproduce every number with the versions each run recorded.

Everything is read from MLflow (params, metrics, tags, artefacts): a report can be rebuilt at
any time from the store alone.
"""

from __future__ import annotations

import base64
import html
import re
import shlex
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ddcore.errors import DDError
from ddcore.tables import ResultTable, percent, squared_points
from ddcore.visualize import save_accuracy_vs_ipc
from orchestrator.engine.analyses import ANALYSIS_TAG, COMMAND_TAG, SOURCE_TAG
from orchestrator.store import run_schema as schema
from orchestrator.store.reproduce import command_from_params
from orchestrator.store.run_schema import Status, Tag, tag_filter
from orchestrator.store.runs import find_run, first_eval_model, get_run, set_runs
from orchestrator.store.tracking import check_reachable, package_versions, resolve_tracking_uri

ANALYSIS_TITLES = {
    "cross_arch": "Cross-architecture generalisation",
    "continual": "Class-incremental continual learning",
    "nas_proxy": "Architecture-search proxy",
}
GRID = "grids/grid_all_classes.png"  # a trial's synthetic set, one row per class (orchestrator.engine.trial)


@dataclass
class Figure:
    title: str
    path: Path  # a PNG inside the report's images/ folder


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[ResultTable] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    code: list[str] = field(default_factory=list)


@dataclass
class Report:
    title: str
    sections: list[Section]
    markdown_path: Path
    html_path: Path


@dataclass
class Trial:
    """One distillation run (from `ddorch run` or a sweep) and the analyses recorded for it."""

    run: object  # mlflow.entities.Run
    sweep: str | None = None
    analyses: list = field(default_factory=list)  # child analysis runs
    stopped_at: tuple[int, float] | None = None  # (iteration, accuracy) where a scheduler stopped it
    sets: list = field(default_factory=list)  # a run of several distilled sets: its sets' child runs, by seed

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def param(self, name: str, default: str = "-") -> str:
        return self.run.data.params.get(name, default)

    @property
    def label(self) -> str:
        return (
            f"{self.run_id[:8]}: {self.param('dataset')} {self.param('method')} IPC {self.param('method_config.ipc')}, "
            f"{self.param('method_config.init')} init"
        )


class Collector:
    """Resolves ids to trials and downloads their artefacts into the report's images folder."""

    def __init__(self, tracking_uri: str | None, experiment: str, images: Path):
        import os

        from mlflow.tracking import MlflowClient

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

        self.uri = resolve_tracking_uri(tracking_uri)
        check_reachable(self.uri)
        self.client = MlflowClient(self.uri)
        self.experiment = experiment
        self.images = images
        self.sweeps: dict[str, object] = {}  # sweep name -> parent run

    def trials(self, ids: list[str]) -> list[Trial]:
        found: dict[str, Trial] = {}
        for identifier in ids:
            for trial in self._resolve(identifier):
                found.setdefault(trial.run_id, trial)
        for trial in found.values():
            trial.analyses = self.client.search_runs(
                [trial.run.info.experiment_id],
                f"tags.`{SOURCE_TAG}` = '{trial.run_id}'",
                order_by=["attributes.start_time ASC"],
            )
            trial.stopped_at = self._stopped_at(trial.run)
            trial.sets = set_runs(self.client, trial.run)
        return list(found.values())

    def _stopped_at(self, run) -> tuple[int, float] | None:
        """A run stopped early on purpose: its last quick evaluation. Such runs are FINISHED and tagged
        `Tag.STOPPED_EARLY`; stores written before that hold them as KILLED with a stop reason."""
        if not schema.stopped_early(run.info.status, run.data.tags):
            return None
        history = self.client.get_metric_history(run.info.run_id, schema.EVAL_ACCURACY)
        last = max(history, key=lambda m: m.step, default=None)
        return (last.step, last.value) if last else (0, float("nan"))

    def _resolve(self, identifier: str) -> list[Trial]:
        run = find_run(self.client, identifier, self.uri)
        if run is None:
            return self._sweep_by_name(identifier)
        if ANALYSIS_TAG in run.data.tags:
            return [Trial(get_run(self.client, run.data.tags[SOURCE_TAG], self.uri))]
        if Tag.SWEEP in run.data.tags:
            return self._sweep_children(run)
        return [Trial(run)]

    def _sweep_by_name(self, name: str) -> list[Trial]:
        experiment = self.client.get_experiment_by_name(self.experiment)
        found = (
            self.client.search_runs([experiment.experiment_id], tag_filter(Tag.SWEEP, name), max_results=1)
            if experiment
            else []
        )
        if not found:
            raise DDError(f"'{name}' is neither a run id nor a sweep name in {self.uri} (experiment {self.experiment})")
        return self._sweep_children(found[0])

    def _sweep_children(self, parent) -> list[Trial]:
        name = parent.data.tags[Tag.SWEEP]
        self.sweeps[name] = parent
        children = self.client.search_runs(
            [parent.info.experiment_id],
            f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
            order_by=["attributes.start_time ASC"],
        )
        return [Trial(child, sweep=name) for child in children if ANALYSIS_TAG not in child.data.tags]

    def artefacts(self, run_id: str, folder: str | None = None) -> list[str]:
        return [entry.path for entry in self.client.list_artifacts(run_id, folder) if not entry.is_dir]

    def image(self, run_id: str, path: str) -> Path | None:
        """Download one artefact image to images/<run>_<path>; None when the run does not have it."""
        if path not in self.artefacts(run_id, str(Path(path).parent) if "/" in path else None):
            return None
        target = self.images / f"{run_id[:8]}_{path.replace('/', '_')}"
        with tempfile.TemporaryDirectory() as folder:
            target.write_bytes(Path(self.client.download_artifacts(run_id, path, folder)).read_bytes())
        return target

    def table(self, run_id: str, kind: str) -> ResultTable | None:
        if f"{kind}/table.json" not in self.artefacts(run_id, kind):
            return None
        with tempfile.TemporaryDirectory() as folder:
            return ResultTable.load(self.client.download_artifacts(run_id, f"{kind}/table.json", folder))


def _eval_models(trial: Trial) -> list[str]:
    return schema.evaluated_models(trial.run.data.metrics)


def _short(value: str) -> str:
    """A logged setting for a table cell: floats to 4 significant digits."""
    try:
        return f"{float(value):.4g}" if "." in value or "e" in value else value
    except ValueError:
        return value


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _accuracy(trial: Trial, model: str) -> str:
    found = schema.headline(trial.run.data.metrics, model)
    return "-" if found is None else percent(found.mean, found.std)


def _val_accuracy(trial: Trial, model: str) -> str:
    """The validation mean of a run that held a validation part out (`--selection val`); "-" otherwise."""
    found = trial.run.data.metrics.get(schema.val_acc_mean(model))
    return "-" if found is None else f"{100 * found:.2f}"


def _chose(trial: Trial) -> str:
    """What chose among a run's checkpoints (and its sweep among trials); runs before the setting: test."""
    return trial.param("selection", "test")


def _sets(trial: Trial) -> str:
    """How many distilled sets a run's accuracy rests on (1 for runs recorded before several existed)."""
    return str(int(trial.run.data.metrics.get(schema.DISTILL_SETS, 1)))


def setup_section(collector: Collector, trials: list[Trial]) -> Section:
    versions = {t.run.data.tags.get(Tag.VERSIONS, "not recorded") for t in trials}
    per_run = len(versions) > 1  # one line when every run recorded the same versions
    rows = [
        [
            t.run_id[:8],
            t.sweep or "-",
            t.run.data.tags.get(Tag.GIT_COMMIT, "-"),
            *([t.run.data.tags.get(Tag.VERSIONS, "not recorded")] if per_run else []),
        ]
        for t in trials
    ]
    columns = ["run", "sweep", "git commit", *(["versions recorded by the run"] if per_run else [])]
    now = package_versions()
    if versions == {now}:
        recorded = "every run recorded the same"
    else:
        recorded = "the runs recorded the versions in the table" if per_run else f"the runs recorded {min(versions)}"
    text = [
        f"MLflow store: `{collector.uri}`; generated {time.strftime('%Y-%m-%d %H:%M:%S')} with {now}; {recorded}.",
        "Accuracies are test accuracy in %: mean ± std over the evaluation networks of one distilled set, or, "
        "where a run has several sets (the `sets` column), mean ± std over the sets' means. `val %`: the mean on "
        "the validation part held out of the training images, in runs with `--selection val` (`chose`: which of "
        "the two chose the run's checkpoint and its sweep's ranking). FLOPs: fvcore's convention, "
        "one multiply-add = one FLOP, per image, forward pass.",
    ]
    return Section("Setup", text=text, tables=[ResultTable("Runs in this report", columns, rows)])


def _headline(trial: Trial) -> tuple[str, float] | None:
    """(network, final mean accuracy) of a trial's first evaluation network, when it finished."""
    model = first_eval_model(trial.run)
    found = schema.headline(trial.run.data.metrics, model) if model else None
    return None if found is None else (model, found.mean)


def _full_data(trials: list[Trial], dataset: str, model: str) -> float | None:
    """The full-data accuracy of `model` on `dataset`, as any of the trials logged it."""
    for trial in trials:
        if trial.param("dataset") == dataset and schema.baseline_acc(model) in trial.run.data.metrics:
            return trial.run.data.metrics[schema.baseline_acc(model)]
    return None


def _train_images_per_class(dataset: str) -> float | None:
    """Real training images per class (the compression ratio's numerator); None without the data here."""
    from ddcore.data import load_dataset

    try:
        data = load_dataset(dataset)
    except DDError:
        return None
    return len(data.train_labels) / data.num_classes


def summary_section(trials: list[Trial]) -> Section | None:
    scored = [(trial, *headline) for trial in trials if (headline := _headline(trial))]
    if not scored:
        return None
    # Chosen on validation where every run has it: the best by test would be the winner's curse.
    validated = all(schema.val_acc_mean(model) in trial.run.data.metrics for trial, model, _ in scored)
    key = (lambda s: s[0].run.data.metrics[schema.val_acc_mean(s[1])]) if validated else (lambda s: s[2])
    trial, model, accuracy = max(scored, key=key)
    dataset, ipc = trial.param("dataset"), int(trial.param("method_config.ipc", "0"))
    parts = [
        f"Best{' by validation' if validated else ''}: {100 * accuracy:.2f} % test accuracy on {model}, "
        f"run {trial.run_id[:8]} "
        f"({trial.param('method')} on {dataset}, IPC {ipc}, {trial.param('method_config.init')} init)"
    ]
    full = _full_data(trials, dataset, model)
    if full:
        parts.append(f"{100 * accuracy / full:.1f} % of the full-data {100 * full:.2f} %")
    per_class = _train_images_per_class(dataset)
    if per_class and ipc:
        parts.append(
            f"compression ratio {per_class / ipc:,.0f}x ({per_class:,.0f} real training images per class, {ipc} synthetic)"
        )
    return Section("Summary", text=["; ".join(parts) + "."])


def baseline_section(trials: list[Trial]) -> Section | None:
    rows: dict[tuple[str, str], list[str]] = {}
    for trial in trials:
        metrics = trial.run.data.metrics
        for model in _eval_models(trial):
            if schema.baseline_acc(model) in metrics:
                rows[(trial.param("dataset"), model)] = [
                    trial.param("dataset"),
                    model,
                    f"{100 * metrics[schema.baseline_acc(model)]:.2f}",
                    f"{metrics.get(schema.flops(model), float('nan')) / 1e6:.2f}",
                    f"{metrics.get(schema.baseline_train_seconds(model), float('nan')):.1f}",
                    trial.run_id[:8],
                ]
    if not rows:
        return None
    table = ResultTable(
        "Full-data baseline (train on the whole real training set)",
        ["data set", "model", "accuracy %", "MFLOPs / image", "train s", "logged by run"],
        list(rows.values()),
        notes=[
            "the full-data protocol: SGD momentum 0.9, cosine annealing from lr 0.01, 20 epochs "
            "(`ddorch baseline` reproduces it; results cached by data set, model, protocol and seed)"
        ],
    )
    return Section("Full-data baseline", tables=[table])


def _status(trial: Trial) -> str:
    """finished / failed / running, or where a scheduler stopped the trial (not a failure)."""
    if trial.stopped_at is None:
        return trial.run.info.status.lower()
    iteration, accuracy = trial.stopped_at
    reached = "" if accuracy != accuracy else f", {100 * accuracy:.2f} % then"  # NaN: no evaluation yet
    return f"stopped early at {iteration}{reached}"


def _searched(collector: Collector) -> list[str]:
    """The settings the report's sweeps searched (their parents log `space.<name>.<field>`)."""
    names = {
        key.split(".")[1]
        for parent in collector.sweeps.values()
        for key in parent.data.params
        if key.startswith("space.")
    }
    return sorted(names)


def method_sections(trials: list[Trial], searched: list[str]) -> list[Section]:
    by_method: dict[str, list[Trial]] = defaultdict(list)
    for trial in trials:
        by_method[trial.param("method")].append(trial)
    sections = []
    for method, members in sorted(by_method.items()):
        models = sorted({m for t in members for m in _eval_models(t)})
        settings = [name for name in searched if name not in ("ipc", "init", "iterations")]  # columns already
        rows = [
            [
                t.run_id[:8],
                t.sweep or "-",
                t.param("dataset"),
                t.param("method_config.ipc"),
                t.param("method_config.init"),
                t.param("method_config.model"),
                t.param("method_config.iterations"),
                *[_short(t.param(f"method_config.{name}")) for name in settings],
                _sets(t),
                *[_accuracy(t, m) for m in models],
                *[_val_accuracy(t, m) for m in models],
                _chose(t),
                _seconds(t.run.data.metrics.get(schema.DISTILL_SECONDS)),
                _status(t),
            ]
            for t in members
        ]
        columns = [
            "run",
            "sweep",
            "data set",
            "IPC",
            "init",
            "distilled with",
            "iterations",
            *settings,
            "sets",
            *[f"{m} acc. %" for m in models],
            *[f"{m} val %" for m in models],
            "chose",
            "distill s",
            "status",
        ]
        sections.append(Section(f"Method: {method}", tables=[ResultTable(f"{method} runs", columns, rows)]))
    return sections


def sets_section(trials: list[Trial]) -> Section | None:
    """Runs of several distilled sets: each set's mean, the result over sets, over all networks, and the
    spread's two components (`ddcore.spread.over_sets`)."""
    from ddcore.spread import ESTIMATOR

    rows = []
    for trial in (t for t in trials if t.sets):
        metrics = trial.run.data.metrics
        for model in _eval_models(trial):
            set_means = (child.data.metrics.get(schema.acc_mean(model)) for child in trial.sets)
            rows.append(
                [
                    trial.run_id[:8],
                    model,
                    _sets(trial),
                    ", ".join("-" if m is None else f"{100 * m:.2f}" for m in set_means),
                    _accuracy(trial, model),
                    _pair(metrics, schema.acc_mean_over_networks(model), schema.acc_std_over_networks(model)),
                    squared_points(metrics.get(schema.between_set_var(model))),
                    squared_points(metrics.get(schema.within_set_var(model))),
                ]
            )
    if not rows:
        return None
    columns = [
        "run",
        "network",
        "sets",
        "per set (mean over its networks) %",
        "over sets %",
        "over all networks %",
        "variance between sets %²",
        "variance within a set %²",
    ]
    notes = [
        "over sets: mean ± std of the sets' means (the headline); over all networks: pooled; "
        f"variance components: {ESTIMATOR} (ddcore/spread.py)"
    ]
    table = ResultTable("Runs over several distilled sets", columns, rows, notes=notes)
    return Section("Several distilled sets", tables=[table])


def _pair(metrics: dict[str, float], mean: str, std: str) -> str:
    return "-" if mean not in metrics else percent(metrics[mean], metrics.get(std, 0.0))


def _by_setting(trials: list[Trial]) -> list[Trial]:
    """Runs of the same data set, method and IPC next to each other (real and noise init side by side)."""
    return sorted(
        trials,
        key=lambda t: (
            t.param("dataset"),
            t.param("method"),
            t.param("method_config.ipc"),
            t.param("method_config.init"),
            t.run_id,
        ),
    )


def image_sections(collector: Collector, trials: list[Trial]) -> list[Section]:
    grids, curves = Section("Synthetic sets"), Section("Distillation loss curves")
    for trial in _by_setting(trials):
        shown = trial.sets[0].info.run_id if trial.sets else trial.run_id  # several sets: the first set's grid
        grid = collector.image(shown, GRID)
        if grid:
            grids.figures.append(Figure(trial.label, grid))
        curve = collector.image(trial.run_id, "loss_curve.png")
        if curve:
            curves.figures.append(Figure(trial.label, curve))
    grids.text.append("One row per class, named on its left; images de-normalised to pixels.")
    return [s for s in (grids, curves) if s.figures]


@dataclass
class IpcPlot:
    """One accuracy-vs-IPC plot's points (%), per line (method and init): the best finished run's mean and
    std at each IPC, and the last quick evaluation of each trial a scheduler stopped early."""

    best: dict[str, dict[int, tuple[float, float]]] = field(default_factory=lambda: defaultdict(dict))
    stopped: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))

    def curves(self) -> dict[str, list[tuple[int, float, float, float]]]:
        """Per line, (ipc, mean, mean - std, mean + std) in IPC order."""
        return {
            line: sorted((i, m, m - s, m + s) for i, (m, s) in points.items()) for line, points in self.best.items()
        }

    def ipcs(self) -> set[int]:
        return {i for points in self.best.values() for i in points} | {i for p in self.stopped.values() for i, _ in p}


def ipc_plots(trials: list[Trial]) -> dict[tuple[str, str], IpcPlot]:
    """The points of every accuracy-vs-IPC plot, by (data set, eval model). A stopped trial has no final
    evaluation: it is placed at its quick evaluation on its first eval model, apart from the finished runs."""
    plots: dict[tuple[str, str], IpcPlot] = defaultdict(IpcPlot)
    for trial in trials:
        line = f"{trial.param('method')} {trial.param('method_config.init')} init"
        ipc = int(trial.param("method_config.ipc", "0"))
        if trial.stopped_at is not None:
            model, accuracy = first_eval_model(trial.run), trial.stopped_at[1]
            if model and accuracy == accuracy:  # NaN: stopped before its first evaluation, nothing to place
                plots[(trial.param("dataset"), model)].stopped[line].append((ipc, 100 * accuracy))
            continue
        for model in _eval_models(trial):
            best = plots[(trial.param("dataset"), model)].best[line]
            found = schema.headline(trial.run.data.metrics, model)
            point = (100 * found.mean, 100 * found.std)
            best[ipc] = max(point, best.get(ipc, point))
    return plots


def ipc_section(trials: list[Trial], images: Path) -> Section | None:
    """Accuracy (%) vs IPC, one plot per (data set, eval model) with two IPCs or more (`ipc_plots`), and
    the full-data accuracy as a line."""
    figures = []
    for (dataset, model), plot in sorted(ipc_plots(trials).items()):
        if len(plot.ipcs()) < 2:
            continue
        full = _full_data(trials, dataset, model)
        target = None if full is None else 100 * full
        path = images / f"accuracy_vs_ipc_{dataset}_{model}.png"
        save_accuracy_vs_ipc(plot.curves(), plot.stopped, target, target, _train_images_per_class(dataset), path)
        figures.append(Figure(f"{dataset}, evaluated on {model}", path))
    if not figures:
        return None
    return Section(
        "Accuracy vs IPC",
        text=[
            "The best finished run at each IPC: mean ± std over its evaluation seeds; crosses are trials stopped "
            "early by the scheduler, at their last quick evaluation (one seed); the black line is the full-data "
            "accuracy."
        ],
        figures=figures,
    )


def sweep_sections(collector: Collector, trials: list[Trial]) -> list[Section]:
    """Per sweep: its trials' outcome counts and the plots on its parent run (accuracy vs each searched
    setting, the best trial's grid)."""
    sections = []
    for name, parent in collector.sweeps.items():
        members = [t for t in trials if t.sweep == name]
        counts = defaultdict(int)
        for trial in members:
            counts["stopped early" if trial.stopped_at else trial.run.info.status.lower()] += 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        section = Section(f"Sweep {name}", text=[f"{len(members)} trials: {summary}.", *winners_curse(parent)])
        for folder in ("plots", "best_trial"):
            section.figures += plot_figures(collector, parent.info.run_id, folder, name)
        sections.append(section)
    return sections


def winners_curse(parent) -> list[str]:
    """The sweep's best trial by validation, its test accuracy beside the best test accuracy of all its
    trials and the difference; nothing for sweeps ranked on the test set (recorded before validation parts)."""
    metrics = parent.data.metrics
    if schema.SWEEP_CURSE not in metrics or f"best_{schema.VAL_EVAL_ACCURACY}" not in metrics:
        return []
    return [
        f"Best trial by validation: {100 * metrics[f'best_{schema.VAL_EVAL_ACCURACY}']:.2f} % on the validation part, "
        f"{100 * metrics[schema.SWEEP_CHOSEN_TEST]:.2f} % test accuracy; the best test accuracy of all finished "
        f"trials is {100 * metrics[schema.SWEEP_MAX_TEST]:.2f} %: choosing on the test set would have reported "
        f"{100 * metrics[schema.SWEEP_CURSE]:.2f} points more (the winner's curse)."
    ]


def analysis_sections(collector: Collector, trials: list[Trial]) -> list[Section]:
    sections = {kind: Section(title) for kind, title in ANALYSIS_TITLES.items()}
    for trial in trials:
        # the trial's own cross_arch/ folder (a sweep preset's cross_arch_models), then its analysis runs
        holders = [(trial.run_id, kind) for kind in ANALYSIS_TITLES if collector.artefacts(trial.run_id, kind)]
        holders += [
            (a.info.run_id, a.data.tags[ANALYSIS_TAG]) for a in trial.analyses if a.info.status == Status.FINISHED
        ]
        for run_id, kind in holders:
            table = collector.table(run_id, kind)
            if table is None:
                continue
            table.title = f"{table.title} (run {trial.run_id[:8]}, recorded in {run_id[:8]})"
            sections[kind].tables.append(table)
            sections[kind].figures += plot_figures(collector, run_id, kind, table.title)
    return [s for s in sections.values() if s.tables]


def plot_figures(collector: Collector, run_id: str, folder: str | None, title: str) -> list[Figure]:
    """The plots (PNG) run `run_id` holds in `folder` (None: at the top), each captioned `title: <its name>`."""
    plots = [path for path in collector.artefacts(run_id, folder) if path.endswith(".png")]
    return [Figure(f"{title}: {Path(path).stem}", collector.image(run_id, path)) for path in plots]


def run_command(trial: Trial) -> tuple[str, list[str]]:
    """The `ddorch run` command that reproduces a trial, built from its logged config (`command_from_params`)."""
    return command_from_params(trial.run.data.params)


def reproduce_section(collector: Collector, trials: list[Trial]) -> Section:
    section = Section(
        "Reproduce",
        text=[
            f"Each command below reproduces its numbers against the same data; point `--tracking-uri` at a store "
            f"(this report read `{collector.uri}`). Versions are the ones each run recorded (see Setup)."
        ],
    )
    for name, parent in collector.sweeps.items():
        experiment = parent.data.params.get("preset.name", name)
        seed = parent.data.params.get("sweep.seed", "None")
        seeded = "" if seed == "None" else f" --seed {seed}"
        section.code.append(
            f"# sweep {name} (parent run {parent.info.run_id[:8]})\n"
            f"ddorch sweep {shlex.quote(experiment)} --name {shlex.quote(name)}{seeded}"
        )
    for trial in trials:
        command, caveats = run_command(trial)
        extra = f"\n# {'; '.join(caveats)}" if caveats else ""
        origin = f", a trial of sweep {trial.sweep}" if trial.sweep else ""
        section.code.append(f"# run {trial.run_id[:8]}{origin}\n{command}{extra}")
        for analysis in trial.analyses:
            if COMMAND_TAG in analysis.data.tags:
                section.code.append(
                    f"# {analysis.data.tags[ANALYSIS_TAG]} of run {trial.run_id[:8]} "
                    f"(recorded in {analysis.info.run_id[:8]}; use the new run id if you rerun the trial)\n"
                    f"{analysis.data.tags[COMMAND_TAG]}"
                )
    return section


def to_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""]
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        lines += [paragraph + "\n" for paragraph in section.text]
        for table in section.tables:
            lines += [table.to_markdown(), ""]
        for figure in section.figures:
            lines += [
                f"![{figure.title}]({figure.path.relative_to(report.markdown_path.parent).as_posix()})",
                "",
                f"*{figure.title}*",
                "",
            ]
        for code in section.code:
            lines += ["```bash", code, "```", ""]
    return "\n".join(lines)


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em;display:block;overflow-x:auto;max-width:100%}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}caption{font-weight:bold;text-align:left;padding:4px 0}figure{display:inline-block;margin:0.5em;
vertical-align:top;max-width:48%}figure img{max-width:100%}figcaption{font-size:0.8em}pre{background:#f6f6f6;padding:0.6em;
overflow-x:auto}ul.notes{font-size:0.85em;color:#444}"""


def _inline(text: str) -> str:
    """Escaped text with Markdown's `code` spans as <code> elements (no literal backticks on the page)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _html_table(table: ResultTable) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{_inline(v)}</td>" for v in row) + "</tr>" for row in table.rows)
    notes = "".join(f"<li>{_inline(n)}</li>" for n in table.notes)
    return (
        f"<table><caption>{_inline(table.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
    )


def to_html(report: Report) -> str:
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(report.title)}</h1>"
    ]
    for section in report.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{_inline(paragraph)}</p>" for paragraph in section.text]
        parts += [_html_table(table) for table in section.tables]
        for figure in section.figures:
            data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(figure.title)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(figure.title)}</figcaption></figure>"
            )
        parts += [f"<pre><code>{html.escape(code)}</code></pre>" for code in section.code]
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(
    ids: list[str],
    out: Path,
    tracking_uri: str | None = None,
    experiment: str = "ddorch",
    title: str | None = None,
) -> Report:
    """Collect the runs behind `ids` (run ids, sweep parent run ids or sweep names) and write report.md
    and report.html, titled `title` (default: the ids)."""
    if not ids:
        raise DDError("report needs at least one run id or sweep name")
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    collector = Collector(tracking_uri, experiment, images)
    trials = collector.trials(ids)
    if not trials:
        raise DDError(f"no runs found for {', '.join(ids)}")
    sections = [
        summary_section(trials),
        setup_section(collector, trials),
        baseline_section(trials),
        *method_sections(trials, _searched(collector)),
        sets_section(trials),
        *sweep_sections(collector, trials),
        *image_sections(collector, trials),
        ipc_section(trials, images),
        *analysis_sections(collector, trials),
        reproduce_section(collector, trials),
    ]
    report = Report(
        title or f"ddorch report: {', '.join(ids)}",
        [s for s in sections if s is not None],
        out / "report.md",
        out / "report.html",
    )
    report.markdown_path.write_text(to_markdown(report))
    report.html_path.write_text(to_html(report))
    return report
