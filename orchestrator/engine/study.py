"""Studies: a rows file with a header, run by the benchmark runner, reported by section (`ddorch study`).

A study file (`studies/NAME.toml`, shipped as `orchestrator.presets.studies`; `$DDORCH_PRESETS/studies/`
first) holds a `[study]` table (`name`, `title`, `[[study.section]]` tables of `id`, `title`,
`question`) and `[[row]]` tables: the rows of `orchestrator.engine.bench` (trials, baselines, analyses
of a trial's set, lossless searches), read by the same parser, each joining a section by its `group`.
The accuracy benchmark (`benchmarks/rows.toml`, header-less) is the study "benchmarks". A study runs
through `bench.run_suite` into its folder (`./ddorch-studies/NAME/`: results.jsonl, parts/, the
report), so done parts are reused and a stopped study resumes; its trials' MLflow runs go to the
experiment `study-NAME` (analyses are children of the run they read, in its experiment; a search keeps
`LosslessConfig.experiment`, `ddorch` unless its settings name another).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ddcore.errors import DDError
from orchestrator.engine.bench import (
    EXPERIMENT,
    BenchFolder,
    Row,
    distillation_pauses,
    gpu_seconds,
    kept_text,
    minutes_text,
    read_toml,
    row_minutes,
    rows_from,
    unpriced,
)
from orchestrator.engine.experiments import preset_folders

STUDIES = "studies"  # the presets' folder of study files
FOLDER = Path("ddorch-studies")  # where `study run` keeps each study's results, parts and report
BENCHMARKS = "benchmarks"  # the study name of a header-less rows file


@dataclass(frozen=True)
class Section:
    """A report section; rows join it by their `group`."""

    id: str
    title: str
    question: str = ""


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    path: Path
    sections: tuple[Section, ...]
    rows: tuple[Row, ...]  # sources before the analyses that read them

    def section_rows(self, section: Section) -> list[Row]:
        return [row for row in self.rows if row.group == section.id]


def load_study(path: Path) -> Study:
    """A study file; every error is one line naming the file and the field or row."""
    if not path.is_file():
        raise DDError(f"no study file {path}")
    data = read_toml(path)
    unknown = sorted(set(data) - {"study", "row"})
    if unknown:
        raise DDError(f"{path}: unknown table(s) {', '.join(unknown)}; a study has [study] and [[row]]")
    header = data.get("study", {"name": BENCHMARKS, "title": "The accuracy benchmark"})
    missing = sorted({"name", "title"} - set(header))
    if missing:
        raise DDError(f"{path}: [study] needs {', '.join(missing)}")
    extra = sorted(set(header) - {"name", "title", "section"})
    if extra:
        raise DDError(f"{path}: [study] has unknown key(s) {', '.join(extra)}; known: name, title, section")
    sections = tuple(_section(path, number, table) for number, table in enumerate(header.get("section", []), 1))
    rows = tuple(rows_from(path, data.get("row", [])))
    ids = [s.id for s in sections]
    if sections:
        stray = next((row for row in rows if row.group not in ids), None)
        if stray is not None:
            raise DDError(
                f"{path}, row {stray.name}: group {stray.group!r} names no section; sections: {', '.join(ids)}"
            )
    return Study(header["name"], header["title"], path, sections, rows)


def _section(path: Path, number: int, table: dict) -> Section:
    try:
        return Section(**table)
    except TypeError:
        raise DDError(f"{path}, section {number}: a section has an id, a title and a question (only)") from None


def find_study(name: str) -> Path:
    """`$DDORCH_PRESETS/studies/NAME.toml`, else the shipped one; an unknown name lists the known."""
    for folder in preset_folders(STUDIES):
        for path in folder.iterdir() if folder.is_dir() else ():
            if path.name.endswith(".toml") and _name_of(Path(str(path))) == name:
                return Path(str(path))
    known = ", ".join(study.name for study in list_studies())
    raise DDError(f"unknown study {name!r}; known studies: {known or 'none'}")


def _name_of(path: Path) -> str:
    """A study's name: its header's, else the file's stem (a header-less rows file: `benchmarks`)."""
    return read_toml(path).get("study", {}).get("name", path.stem)


def list_studies() -> list[Study]:
    """Every study file found, each name once (the user's folder first)."""
    studies: dict[str, Study] = {}
    for folder in preset_folders(STUDIES):
        for path in sorted(folder.iterdir(), key=lambda p: p.name) if folder.is_dir() else ():
            if path.name.endswith(".toml"):
                study = load_study(Path(str(path)))
                studies.setdefault(study.name, study)
    return list(studies.values())


def study_folder(study: Study, folder: Path | None = None) -> BenchFolder:
    """Where a study's results.jsonl, parts/ and report live (`folder`, else ./ddorch-studies/<name>/), and
    the MLflow experiment of its trials' runs: `study-<name>` (the benchmark's rows keep `benchmarks`)."""
    experiment = EXPERIMENT if study.name == BENCHMARKS else f"study-{study.name}"
    return BenchFolder(folder or FOLDER / study.name, experiment)


def select_parts(study: Study, only: str | None) -> list[Row]:
    """The parts `--only` names (comma-separated) and every part they read, in dependency order; all
    when None."""
    if not only:
        return list(study.rows)
    by_name = {row.name: row for row in study.rows}
    names = named_parts(only)
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise DDError(f"{study.path}: no part {', '.join(unknown)} in study {study.name}; parts: {', '.join(by_name)}")
    wanted = set()
    for name in names:
        while name and name not in wanted:
            wanted.add(name)
            name = by_name[name].of
    return [row for row in study.rows if row.name in wanted]


def named_parts(only: str | None) -> list[str]:
    """The part names of an `--only` (comma-separated)."""
    return [name.strip() for name in (only or "").split(",") if name.strip()]


def rerun_parts(study: Study, only: str | None) -> frozenset[str]:
    """The parts `--rerun` runs again: those `--only` names (not the parts they read), else all."""
    return frozenset(named_parts(only) if only else (row.name for row in study.rows))


def on_gpu_only(rows: list[Row], only: str | None, gpus: bool) -> list[Row]:
    """GPU parts (`hardware = "gpu"`) a run without GPUs (`gpus` False) leaves out: all of them unless
    `--only` names them."""
    if gpus:
        return []
    named = set(named_parts(only))
    return [row for row in rows if row.hardware == "gpu" and row.name not in named]


@dataclass(frozen=True)
class PlanLine:
    """One part of a dry run: done or pending, its minutes on this machine and on a GPU (inf: unknown)."""

    row: Row
    done: bool
    cpu_minutes: float
    gpu_minutes: float
    note: str = ""  # why a run leaves it out, or whose run it shares ("" when it runs)
    kept: str = ""  # what earlier runs of a pending part kept on disk

    def text(self) -> str:
        why = unpriced(self.row)
        return (
            f"{self.row.name:34} {'done' if self.done else 'pending':8} "
            f"here ~{minutes_text(self.cpu_minutes):>5} min  GPU ~{minutes_text(self.gpu_minutes):>5} min  "
            f"{self.row.group}"
            + (f" (no estimate: {why})" if why and not self.done else "")
            + (f" (no GPU figure for {self.row.dataset})" if not why and math.isinf(self.gpu_minutes) else "")
            + "".join(f"; {text}" for text in (self.kept, self.note) if text)
        )


def plan(
    rows: list[Row],
    folder: BenchFolder,
    budget_minutes: float | None,
    gpu_left_out: list[Row],
    rerun: frozenset[str] = frozenset(),
) -> list[PlanLine]:
    """What `study run` would do, part by part, without running anything: the budget is spent in
    order on the pending parts (and those `rerun` names) that fit whole (a run may also start the piece
    of a longer trial that fits); a one-set trial that does not fit distils until the budget ends, its set
    kept for the next run."""
    from ddcore.hardware import machine
    from orchestrator.engine.bench import load_results

    results, here = load_results(folder.results), machine()
    done = {line["key"] for line in results} - {row.key() for row in rows if row.name in rerun}
    left = budget_minutes
    lines, first = [], {}  # first: the row that runs each settings
    for row in rows:
        key = row.key()
        if key in done or key in first:
            note = f"the same settings as {first[key]}, whose run it shares" if key in first else ""
            lines.append(PlanLine(row, key in done, 0.0, 0.0, note))
            continue
        first[key] = row.name
        minutes, note = row_minutes(row, results, here, folder.parts), ""
        if row in gpu_left_out:
            note = f"left out: a GPU part (--only {row.name} runs it here)"
        elif left is not None and minutes > left and distillation_pauses(row, results, here, left, folder.parts):
            note, left = f"its distillation until the budget ends ({left:.0f} min), kept for the next run", 0.0
        elif left is not None and minutes > left:
            note = f"left out: over the budget ({minutes_text(minutes)} min, {left:.0f} min left)"
        elif left is not None:
            left -= minutes
        kept = kept_text(row, results, here, folder.parts)
        lines.append(PlanLine(row, False, minutes, gpu_seconds(row) / 60, note, kept))
    return lines
