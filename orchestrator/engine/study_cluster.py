"""A study's pending parts as Ray tasks, several at once (`ddorch study run NAME --address ADDR`).

Each part is `bench.run_row` in a task of `orchestrator.engine.cluster.TaskPool` (`cpus` per part; a
`hardware = "gpu"` part, or every part with `--device cuda`, also asks for one GPU where the cluster has
any), started once the part it reads (`of`) has its results line. The driver records each finished part's
line (`bench.record`) as it comes, so a stopped study resumes; a failed part is reported and the others go
on. Trials find data, baselines and PAD's experts across nodes as the lossless search's do: the driver's
cache folder, given as a value, and the tracking server (`orchestrator.store.shared_cache.sharing`). A
trial keeps its parts in a temporary folder of its task (a part runs whole here: there is no budget to cut
it). Lines carry `ray_cluster` (the address): their times were measured beside other parts, so the time
model leaves them out and a study's timed claims stay with the sequential runner (`bench.run_suite`).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ddcore.errors import DDError
from ddcore.hardware import machine
from orchestrator.engine.bench import (
    BenchFolder,
    Row,
    RunOptions,
    append,
    drop_parts,
    exclusive,
    load_results,
    outcome_text,
    pending,
    record,
    run_row,
    source_line,
    trial_config,
)
from orchestrator.engine.cluster import TaskPool
from orchestrator.store.tracking import ensure_experiment, open_store


@dataclass(frozen=True)
class ClusterRun:
    """Where and how wide a study runs: the cluster's address, parts at once, CPUs per part, and whether
    parts may ask for a GPU (the cluster has one and the device is not `cpu`)."""

    address: str
    max_concurrent: int
    cpus: float = 1.0
    gpus: bool = False

    def part_gpus(self, row: Row, device: str) -> float:
        return 1.0 if self.gpus and (row.hardware == "gpu" or device == "cuda") else 0.0


def max_parts(cpus_per_part: float, available: dict[str, float]) -> int:
    """As many parts at once as the cluster's CPUs hold at `cpus_per_part` (at least one)."""
    return max(1, int(available.get("CPU", 0) // cpus_per_part))


def check_trials(rows: list[Row], where: Path) -> None:
    """Every trial's settings resolved before a task starts (one line naming the file and the part):
    the sequential runner meets them in its estimates, a task only once it runs."""
    for row in rows:
        if row.kind == "trial":
            try:
                trial_config(row)
            except DDError as error:
                raise DDError(f"{where}, row {row.name}: {error}") from None


def run_part(row: Row, tracking_uri: str, device: str, experiment: str, results: list[dict], cache: str) -> dict:
    """One part in a Ray worker: `run_row`, its trial parts in a folder of its own; the line names this node's machine."""
    from ddcore.baseline import caching_in
    from orchestrator.store.shared_cache import sharing

    with tempfile.TemporaryDirectory(prefix="ddorch-part-") as parts, caching_in(cache), sharing(tracking_uri):
        measured = run_row(row, tracking_uri, device, BenchFolder(Path(parts), experiment), results)
    return {**measured, "machine": machine()}


def run_on_cluster(
    rows: list[Row],
    options: RunOptions,
    folder: BenchFolder,
    cluster: ClusterRun,
    say: Callable[[str], None] = print,
) -> tuple[list[dict], list[str]]:
    """Run the pending rows as Ray tasks on the connected cluster (`options.tracking_uri` resolved; no
    budget); the lines appended and the names of the parts that failed or read one that failed."""
    from mlflow.tracking import MlflowClient

    # the store and the experiment made here, before parts start together (SQLite's first use races)
    open_store(options.tracking_uri)
    ensure_experiment(MlflowClient(options.tracking_uri), folder.experiment)
    parts = _Parts(rows, options, folder, cluster, say)
    with exclusive(folder.lock):
        try:
            while parts.todo or len(parts.pool):
                parts.start_ready()
                if len(parts.pool):
                    parts.finish_one()
        except BaseException:  # Ctrl-C or a kill: the running parts end FAILED in MLflow, not RUNNING
            parts.pool.interrupt()
            raise
    return parts.appended, list(parts.failed.values())


class _Parts:
    """The driver's view of a study run: parts to start (in dependency order), running, failed (key ->
    name), and the lines appended."""

    def __init__(self, rows, options: RunOptions, folder: BenchFolder, cluster: ClusterRun, say) -> None:
        from ddcore.baseline import cache_dir

        self.options, self.folder, self.cluster, self.say = options, folder, cluster, say
        self.lines = load_results(folder.results)
        self.todo = pending(rows, self.lines, options.rerun)
        self.pool = TaskPool(cluster.cpus)
        self.cache = str(cache_dir())  # the driver's, given to the tasks as a value
        self.appended: list[dict] = []
        self.failed: dict[str, str] = {}
        self.started: dict[str, tuple[Row, float, float]] = {}  # name -> (row, start, load at start)

    def start_ready(self) -> None:
        """Start the parts whose source has its line, up to `max_concurrent` running; skip those whose
        source failed or has no result."""
        for row in list(self.todo):
            if len(self.pool) >= self.cluster.max_concurrent:
                return
            source = self._source(row)
            if source == "coming":
                continue
            self.todo.remove(row)
            if source == "failed":  # the study is not done: counted as failed
                self.failed[row.key()] = row.name
                self.say(f"skip {row.name}: it reads {self.failed[row.of_key]}, which failed")
            elif source == "missing":  # as the sequential runner skips it
                self.say(f"skip {row.name}: it reads {row.of}, which has no result")
            else:
                self._start(row)

    def _start(self, row: Row) -> None:
        options, gpus = self.options, self.cluster.part_gpus(row, self.options.device)
        args = (options.tracking_uri, options.device, self.folder.experiment, self.lines, self.cache)
        self.pool.submit(run_part, row, row, *args, gpus=gpus)
        self.started[row.name] = (row, time.perf_counter(), os.getloadavg()[0])
        self.say(f"start {row.name} ({_resources(self.cluster.cpus, gpus)}; {len(self.pool)} running)")

    def _source(self, row: Row) -> str:
        """The part a row reads: "done" (or none read), "coming" (not ended yet), "failed" or "missing"."""
        if not row.of or source_line(row, self.lines) is not None:
            return "done"
        coming = {other.key() for other in self.todo} | {other.key() for other, _, _ in self.started.values()}
        if row.of_key in coming:
            return "coming"
        return "failed" if row.of_key in self.failed else "missing"

    def finish_one(self) -> None:
        """The next part to end: its line recorded as it comes (a stopped study resumes), or its failure said."""
        row, measured, error = self.pool.wait_settled()
        _, since, load = self.started.pop(row.name)
        if error is not None:
            self.failed[row.key()] = row.name
            self.say(f"failed {row.name}: {error}")
            return
        line = record(row, measured, load, os.getloadavg()[0], True, time.perf_counter() - since)
        line["ray_cluster"] = self.cluster.address
        append(line, self.folder.results)
        self.lines.append(line)
        self.appended.append(line)
        drop_parts(row, self.folder.parts)  # ones an earlier run on this machine kept
        self.say(f"done {row.name}: {outcome_text(row, line)} in {line['wall_seconds'] / 60:.1f} min")


def _resources(cpus: float, gpus: float) -> str:
    return f"{cpus:g} CPU" + ("s" if cpus != 1 else "") + (f", {gpus:g} GPU" if gpus else "")
