"""`ddorch study report NAME`: one self-contained HTML page and one Markdown file over a study's parts,
organised by the study's sections in its file's order (each with its title and question).

The numbers come from the study folder's results lines (`orchestrator.engine.bench.record`'s format), so a
report renders without MLflow; grids, analysis tables and plots come from each line's MLflow run, read
with `orchestrator.views.report`'s `Collector` and written by its `to_html` / `to_markdown`. Every number
names its MLflow run (or says the run is not found) beside the settings it was measured with and the
command that reproduces it; parts not run yet are listed with the command that runs them (and what
earlier runs kept of them: a distillation part-way, evaluation seeds).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

from ddcore.hardware import machine
from ddcore.tables import ResultTable, percent
from orchestrator.engine.bench import BenchFolder, Row, compare_lines, kept_text, load_results
from orchestrator.engine.study import Section as StudySection
from orchestrator.engine.study import Study
from orchestrator.store.runs import find_run
from orchestrator.store.tracking import package_versions, resolve_tracking_uri
from orchestrator.views.bench_tables import COLUMNS, table_cells
from orchestrator.views.report import GRID, Collector, Figure, Report, Section, plot_figures, to_html, to_markdown

NOT_FOUND = "MLflow run not found"
ROW_DEFAULTS = asdict(Row(name="", dataset=""))  # what a study file need not give


@dataclass
class Part:
    """A study row with its latest results line (None: not run yet) and that line's MLflow run (None: the
    line names none, or the store does not hold it)."""

    row: Row
    line: dict | None
    run: object | None = None

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def run_id(self) -> str | None:
        return (self.line or {}).get("mlflow_run")


def build_study_report(
    study: Study, folder: BenchFolder, out: Path | None = None, tracking_uri: str | None = None
) -> Report:
    """Write report.html and report.md (and images/) for `study` from the results lines in `folder`, into
    `out` (default: the folder itself)."""
    out = out or folder.path
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    latest = {line["key"]: line for line in load_results(folder.results)}  # a row rerun: its last line
    collector = open_store(tracking_uri, folder.experiment, images)
    parts = [Part(row, latest.get(row.key())) for row in study.rows]
    for part in parts:
        part.run = find_run(collector.client, part.run_id, collector.uri) if collector and part.run_id else None
    sections = [overview_section(study, folder, collector, tracking_uri, parts)]
    for section in sections_of(study):
        members = [part for part in parts if part.row.group == section.id]
        sections.append(study_section(study.name, section, members, collector))
    report = Report(study.title, sections, out / "report.md", out / "report.html")
    report.markdown_path.write_text(to_markdown(report))
    report.html_path.write_text(to_html(report))
    return report


def sections_of(study: Study) -> list[StudySection]:
    """The study's sections; for a study without any (the benchmark's rows file), one per group, in order."""
    if study.sections:
        return list(study.sections)
    return [StudySection(group, group or "other") for group in dict.fromkeys(row.group for row in study.rows)]


def open_store(tracking_uri: str | None, experiment: str, images: Path) -> Collector | None:
    """The MLflow store the study's runs went to (they are read by id, whatever their experiment); None
    when it is a SQLite file that is gone (opening it would create an empty one)."""
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    return Collector(uri, experiment, images)


def run_command(study: str, part: str) -> str:
    return f"ddorch study run {study} --only {part}"


def not_run(study: str, row: Row, kept: str) -> str:
    return f"not run{f' ({kept})' if kept else ''}: `{run_command(study, row.name)}`"


def provenance(part: Part) -> str:
    """The MLflow run behind a part's numbers: its id's first 8 characters, or why there is none."""
    if not part.run_id:
        return "no MLflow run (results line only)"
    return part.run_id[:8] if part.run else f"{part.run_id[:8]} ({NOT_FOUND})"


def settings_text(row: Row) -> str:
    """The row's fields that differ from `Row`'s defaults (its settings as the study file gives them)."""
    given = {k: v for k, v in asdict(row).items() if k not in ("name", "group", "of_key") and v != ROW_DEFAULTS.get(k)}
    given.update(given.pop("settings", {}))  # method, analysis or search settings beside the row's fields
    return ", ".join(f"{k}={v}" for k, v in given.items())


def overview_section(study: Study, folder: BenchFolder, collector: Collector | None, tracking_uri, parts) -> Section:
    store = collector.uri if collector else f"{resolve_tracking_uri(tracking_uri)} (not found: no figures)"
    results, here = load_results(folder.results), machine()
    rows = [
        [
            f"`{p.name}`",
            p.row.group,
            p.row.kind,
            "done" if p.line else not_run(study.name, p.row, kept_text(p.row, results, here, folder.parts)),
            _accuracy(p),
            provenance(p) if p.line else "-",
            f"{p.line['date']}, commit {p.line['commit']}" if p.line else "-",
        ]
        for p in parts
    ]
    columns = ["part", "section", "kind", "state", "accuracy %", "MLflow run", "measured"]
    text = [
        f"Study `{study.name}` ({study.path}); results lines: `{folder.results}`; MLflow store: `{store}`; "
        f"generated {time.strftime('%Y-%m-%d %H:%M:%S')} with {package_versions()}.",
        "Accuracies are test accuracy in %: mean ± std over the evaluation networks of one distilled set, or "
        "over the sets' means where a part has several sets. FLOPs: fvcore's convention, one multiply-add = "
        "one FLOP, per image, forward pass. Each part's numbers name their MLflow run (the first 8 characters "
        f"of its id) and `{run_command(study.name, 'PART')}` reproduces them.",
    ]
    return Section("Study", text=text, tables=[ResultTable("Parts", columns, rows)])


def _accuracy(part: Part) -> str:
    if not part.line or "mean" not in part.line:
        return "-"
    return percent(part.line["mean"], part.line["std"])


def study_section(study: str, section: StudySection, parts: list[Part], collector: Collector | None) -> Section:
    """One section of the study: its question, the measured parts' table, the baselines' cost, methods side by
    side, analyses and searches, the synthetic sets' grids, and every part's command."""
    out = Section(section.title, text=[f"Question: {section.question}"] if section.question else [])
    done = [p for p in parts if p.line]
    measured = [p for p in done if p.row.kind in ("trial", "baseline")]
    if measured:
        out.tables.append(results_table(section.title, measured))
    tables = [baseline_table(measured), side_by_side(measured)]
    out.tables += [table for table in tables if table is not None]
    adds = {"analysis": _add_analysis, "search": _add_search, "trial": _add_grid}  # what each kind shows
    for part in (p for p in done if p.row.kind in adds):
        adds[part.row.kind](out, part, collector)
    pending = [p for p in parts if not p.line]
    if pending:
        out.text.append("Not run yet: " + ", ".join(f"`{p.name}` ({p.row.kind})" for p in pending) + ".")
    out.code += [
        f"# {p.name}: {'MLflow run ' + provenance(p) if p.line else 'not run yet'}\n{run_command(study, p.name)}"
        for p in parts
    ]
    return out


def results_table(title: str, parts: list[Part]) -> ResultTable:
    """The benchmark tables' columns (`bench_tables.table_cells`) and each part's MLflow run; its settings
    as notes."""
    rows = [[*table_cells({**p.line, "row": p.name}), provenance(p)] for p in parts]
    notes = [f"`{p.name}`: {settings_text(p.row)}" for p in parts]
    return ResultTable(f"{title}: results", [*COLUMNS, "MLflow run"], rows, notes=notes)


def baseline_table(parts: list[Part]) -> ResultTable | None:
    """Full-data baselines: accuracy, FLOPs per image and training time per network."""
    rows = [
        [
            f"`{p.name}`",
            p.line["dataset"],
            p.line["eval_model"],
            percent(p.line["mean"], p.line["std"]),
            f"{_flops(p.line) / 1e6:.2f}",
            f"{statistics.fmean(p.line['train_seconds_per_seed']):.1f}",
            str(p.line["seeds"]),
        ]
        for p in parts
        if p.row.kind == "baseline"
    ]
    if not rows:
        return None
    columns = ["part", "data set", "network", "accuracy %", "MFLOPs / image", "train s per network", "networks"]
    notes = ["the full-data protocol of `ddorch baseline` (its results cached by data set, network, protocol, seed)"]
    return ResultTable("Full-data baseline: accuracy, FLOPs, training time", columns, rows, notes=notes)


def _flops(line: dict) -> float:
    """FLOPs per image of the line's network on its data set (fvcore's count, as `ddorch baseline` prints)."""
    from ddcore.data import get_spec
    from ddcore.evaluate import architecture_flops

    spec = get_spec(line["dataset"])
    return architecture_flops(line["eval_model"], spec.channels, spec.num_classes, spec.image_size)


def side_by_side(parts: list[Part]) -> ResultTable | None:
    """Trials of different methods at the same data set, IPC, evaluation network and protocol (PAD against DataDAM):
    the difference and its interval (`engine.bench.compare_lines`) and their times."""
    trials = [p for p in parts if p.row.kind == "trial"]
    rows = []
    for a, b in combinations(trials, 2):
        same = all(a.line[k] == b.line[k] for k in ("dataset", "ipc", "eval_model", "protocol"))
        if not same or a.line["method"] == b.line["method"]:
            continue
        rows.append(
            [
                f"`{a.name}` − `{b.name}`",
                f"{a.line['dataset']}, IPC {a.line['ipc']}, {a.line['eval_model']}",
                _accuracy(a),
                _accuracy(b),
                compare_lines(a.line, b.line).text(),
                f"{a.line['distill_seconds'] / 60:.1f} / {b.line['distill_seconds'] / 60:.1f}",
                f"{provenance(a)} / {provenance(b)}",
            ]
        )
    if not rows:
        return None
    columns = ["A − B", "setting", "A %", "B %", "difference", "distil min A / B", "MLflow runs"]
    return ResultTable("Methods side by side", columns, rows)


def _missing(part: Part, collector: Collector | None) -> str:
    where = "the store is gone" if collector is None else "not in the store"
    return f"`{part.name}`: {NOT_FOUND} ({part.run_id[:8] if part.run_id else 'no id'}: {where}); its figures are left out."


def _add_grid(out: Section, part: Part, collector: Collector | None) -> None:
    if part.run is None:
        out.text.append(_missing(part, collector))
        return
    shown = (part.line.get("set_runs") or [part.run_id])[0]  # several sets: the first set's grid
    grid = collector.image(shown, GRID)
    if grid:
        line = part.line
        title = f"{part.name}: {line['dataset']} {line['method']} IPC {line['ipc']}, {line['init']} init ({part.run_id[:8]})"
        out.figures.append(Figure(title, grid))


def _add_analysis(out: Section, part: Part, collector: Collector | None) -> None:
    """An analysis part's table (its results line holds it) and plots (its MLflow run's `<kind>/` folder)."""
    table = ResultTable(**part.line["table"])
    table.title = f"{table.title} (part {part.name}, of part {part.row.of}, run {provenance(part)})"
    table.notes.append(f"`{part.name}`: {settings_text(part.row)}")
    out.tables.append(table)
    if part.run is None:
        out.text.append(_missing(part, collector))
    else:
        out.figures += plot_figures(collector, part.run_id, part.row.analysis, f"{part.name} ({part.row.analysis})")


def _add_search(out: Section, part: Part, collector: Collector | None) -> None:
    """A lossless search part: each method's smallest lossless IPC and answer (its results line), and the
    accuracy-vs-IPC plot on its parent MLflow run."""
    line = part.line
    rows = [
        [method, "-" if ipc is None else str(ipc), line["answers"][method]]
        for method, ipc in line["smallest_ipc"].items()
    ]
    notes = [
        f"target: {100 * line['target_accuracy']:.2f} %, the full-data accuracy on the part that decides "
        "(the search's `selection`)" + ("; the search's budget ran out" if line["budget_spent"] else ""),
        f"`{part.name}`: {settings_text(part.row)}",
    ]
    title = f"Smallest lossless IPC (part {part.name}, run {provenance(part)})"
    out.tables.append(ResultTable(title, ["method", "smallest lossless IPC", "answer"], rows, notes=notes))
    if part.run is None:
        out.text.append(_missing(part, collector))
    else:
        out.figures += plot_figures(collector, part.run_id, None, f"{part.name} (lossless search)")
