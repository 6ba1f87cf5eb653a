"""The GPU suite: one call on a lent GPU machine turns its few minutes into measured rows.

A lent GPU (one H200 here) comes rarely: 15 minutes in all, start-up included, at most 10 minutes a
command, nothing installable on it. `benchmarks/gpu_suite.sh` is that one call; it runs this file,
which runs rows in priority order under a wall budget:

    1. probe: DataDAM iterations/s (MNIST IPC 1/10/50, MHIST IPC 50; fp32 and bf16) and seconds
       per 1000-epoch evaluation seed, K seeds packed in one wide network against one by one;
    2. MNIST DataDAM IPC 1/10/50 at the `paper` preset's 8,000 iterations, 3 seeds;
    3. MHIST: full-data baseline (ConvNetD7, 128 px), random subset and DataDAM at IPC 50;
    4. the lossless bracket on MNIST: random subsets and DataDAM (short distillation) at growing
       IPCs until lossless against the full-data baseline, or the budget ends;
    5. MNIST DataDAM IPC 10 (2,000 it) and IPC 50 (1,000 it) over 3 distilled sets, the CPU rows' settings;
    6. PAD MNIST IPC 10 with more experts and iterations than the CPU row.

Rows of one `batch` start together as processes (one GPU, 16 cores: each process is bound by its
own core's launch overhead, so they share the GPU well). A batch never starts when its estimate
says it would end past the budget; what runs past the hard deadline is stopped and says so. Each
finished row is appended at once to `OUT/results.jsonl` (trial and baseline rows in the format of
`ddorch bench`, `orchestrator.engine.bench`, with the GPU's name), so a time-out loses nothing
finished; `OUT/env.json` holds the GPU, driver, torch and CUDA versions; a summary goes to stdout. The device has no MLflow:
each trial's run is written to a folder (`orchestrator.store.tracking.FolderTracker`), packed as
`OUT/runs.tar.gz`. Estimates come from the probe once it has run, else from the first week's H100
figures (`orchestrator.engine.bench.GPU_FIGURES`, which the studies' dry runs read too).

    python benchmarks/gpu_suite.py --dry-run              # the plan and its estimates, nothing run
    bash benchmarks/gpu_suite.sh --smoke                  # the same, end to end on the CPU, tiny sizes
    python benchmarks/gpu_suite.py --import DIR           # the rows a call brought back, into results files
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout's ddorch, installed or not

from ddcore import hardware  # noqa: E402
from orchestrator.engine import bench  # noqa: E402  (rows, their runner and their record)
from orchestrator.engine.bench import BenchFolder, Row  # noqa: E402
from orchestrator.views.bench_tables import replace_section, update_results_md  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCH = BenchFolder(HERE)  # the repository's benchmark folder: its rows, results.jsonl and RESULTS.md
GPU_RESULTS = HERE / "gpu_results.jsonl"  # probe and lossless lines (trial/baseline lines go to results.jsonl)
MHIST_VARIANT = "webp95"  # the bundle's MHIST: lossy WebP q95 at the release's 128 px (benchmarks/gpu_bundle.py)

# The CPU smoke (digits, 8 px): the 2-core development host with a test run beside it (load 2).
SMOKE_FIGURES = {
    "its:digits": 25.0,
    "eval_step": 0.03,
    "epoch:digits": 0.4,
    "pad_student_step": 0.01,
    "expert_epoch": 0.1,
    "difficulty_epoch": 0.1,
}
CONTENTION = 1.3  # a batch of concurrent rows takes its longest row's estimate times this (a guess)
START_SECONDS = 8.0  # a row process's imports and data loading


@dataclass(frozen=True)
class Bracket:
    """A lossless bracket: `method` at growing IPCs until its mean reaches the full-data `target` row's
    mean less `tolerance` points (the rule of `orchestrator.engine.ipc_search.decide`), or the time ends."""

    method: str
    dataset: str
    target: str  # the baseline row whose mean is the target
    ipcs: tuple[int, ...]
    iterations: int | None = None
    eval_seeds: int = 2
    eval_epochs: int | None = None
    tolerance: float = 0.0


@dataclass(frozen=True)
class GpuRow:
    """One measurement of the GPU suite: a probe, a suite row (trial or baseline) or a lossless bracket."""

    name: str
    batch: str  # rows of one batch run at once, as processes
    row: Row | None = None
    bracket: Bracket | None = None
    probe: dict = field(default_factory=dict)  # the probe's sizes

    @property
    def kind(self) -> str:
        return "probe" if self.probe else "lossless" if self.bracket else self.row.kind


@dataclass(frozen=True)
class Profile:
    name: str
    device: str
    budget_seconds: float
    figures: dict[str, float]
    rows: tuple[GpuRow, ...]


def gpu(group: str) -> dict[str, str]:
    """A GPU row's marks: kept apart from the CPU row of its settings, in a RESULTS.md group of its own."""
    return {"hardware": "gpu", "group": f"GPU: {group}"}


def _gpu_rows() -> tuple[GpuRow, ...]:
    mnist = [
        GpuRow(
            f"gpu_mnist_datadam_ipc{ipc}",
            "mnist-8000",
            Row(f"gpu_mnist_datadam_ipc{ipc}", "mnist", preset="paper", ipc=ipc, **gpu(f"MNIST DataDAM, {8000:,} it")),
        )
        for ipc in (1, 10, 50)
    ]
    mhist = dict(data_variant=MHIST_VARIANT, eval_model="ConvNetD7", **gpu("MHIST IPC 50"))
    return (
        GpuRow(
            "probe",
            "probe",
            probe={
                "datadam": [("mnist", 1), ("mnist", 10), ("mnist", 50), ("mhist", 50)],
                "precisions": ["fp32", "bf16"],
                "iterations": 40,
                "eval": ("mnist", 10, 100),  # data set, IPC, epochs timed
                "seeds": 3,
            },
        ),
        *mnist,
        GpuRow("gpu_mhist_full_data", "mhist", Row("gpu_mhist_full_data", "mhist", kind="baseline", **mhist)),
        GpuRow("gpu_mhist_random_ipc50", "mhist", Row("gpu_mhist_random_ipc50", "mhist", "random", ipc=50, **mhist)),
        GpuRow(
            "gpu_mhist_datadam_ipc50",
            "mhist",
            Row("gpu_mhist_datadam_ipc50", "mhist", preset="paper", ipc=50, iterations=2000, **mhist),
        ),
        GpuRow(
            "gpu_mnist_full_data",
            "lossless-target",
            Row("gpu_mnist_full_data", "mnist", kind="baseline", **gpu("lossless bracket, mnist")),
        ),
        GpuRow(
            "gpu_lossless_mnist_random",
            "lossless",
            bracket=Bracket("random", "mnist", "gpu_mnist_full_data", (100, 200, 500, 1000, 2000, 5000)),
        ),
        GpuRow(
            "gpu_lossless_mnist_datadam",
            "lossless",
            bracket=Bracket("datadam", "mnist", "gpu_mnist_full_data", (50, 100, 200, 500, 1000), iterations=1000),
        ),
        # issue 41's claim rows over 3 distilled sets, too long for 2 CPU cores (the 2,000-it IPC 10 row: ~5 h there)
        *[
            GpuRow(
                f"gpu_mnist_datadam_ipc{ipc}_{it}it_3sets",
                "sets",
                Row(
                    f"gpu_mnist_datadam_ipc{ipc}_{it}it_3sets",
                    "mnist",
                    preset="paper",
                    ipc=ipc,
                    iterations=it,
                    distill_seeds=3,
                    **gpu("MNIST DataDAM over 3 distilled sets"),
                ),
            )
            for ipc, it in ((10, 2000), (50, 1000))
        ],
        GpuRow(
            "gpu_mnist_pad_ipc10",
            "pad",
            Row(
                "gpu_mnist_pad_ipc10",
                "mnist",
                method="pad",
                iterations=1000,
                settings={"num_experts": 8, "trajectory_epochs": 10, "syn_steps": 20},
                **gpu("PAD"),
            ),
        ),
    )


def _smoke_rows() -> tuple[GpuRow, ...]:
    """The GPU rows' kinds at the digits' sizes, and one row too long for the budget (the skip)."""
    tiny = dict(eval_epochs=3, eval_seeds=2, group="smoke")
    return (
        GpuRow(
            "probe",
            "probe",
            probe={
                "datadam": [("digits", 1), ("digits", 10)],
                "precisions": ["fp32"],
                "iterations": 3,
                "eval": ("digits", 1, 2),
                "seeds": 2,
            },
        ),
        GpuRow("smoke_datadam", "a", Row("smoke_datadam", "digits", preset="paper", ipc=1, iterations=5, **tiny)),
        GpuRow("smoke_random", "a", Row("smoke_random", "digits", "random", ipc=1, **tiny)),
        GpuRow("smoke_full_data", "b", Row("smoke_full_data", "digits", kind="baseline", eval_seeds=1, group="smoke")),
        GpuRow(
            "smoke_lossless",
            "c",
            bracket=Bracket("random", "digits", "smoke_full_data", (1, 5), eval_seeds=2, eval_epochs=3),
        ),
        GpuRow(
            "smoke_too_long", "d", Row("smoke_too_long", "digits", preset="paper", ipc=10, iterations=20000, **tiny)
        ),
    )


PROFILES = {
    "gpu": Profile("gpu", "cuda", 480.0, bench.GPU_FIGURES, _gpu_rows()),
    "smoke": Profile("smoke", "cpu", 45.0, SMOKE_FIGURES, _smoke_rows()),
}


# --- estimates ------------------------------------------------------------------------------------


def bracket_step(bracket: Bracket, ipc: int) -> Row:
    """The trial row of one IPC of a bracket."""
    return Row(
        f"lossless_{bracket.dataset}_{bracket.method}_ipc{ipc}",
        bracket.dataset,
        bracket.method,
        preset="paper" if bracket.method != "random" else None,
        ipc=ipc,
        iterations=bracket.iterations,
        eval_seeds=bracket.eval_seeds,
        eval_epochs=bracket.eval_epochs,
        **gpu(f"lossless bracket, {bracket.dataset}"),
    )


def estimate(gpu_row: GpuRow, figures: dict[str, float]) -> float:
    """Seconds the row takes here; a bracket counts its first IPC (it starts no IPC that would not end)."""
    if gpu_row.probe:
        p = gpu_row.probe
        distil = sum(
            2 * p["iterations"] / bench.gpu_iterations_per_second(figures, dataset, ipc)
            for dataset, ipc in p["datadam"]
        )
        dataset, ipc, epochs = p["eval"]
        return (
            START_SECONDS
            + len(p["precisions"]) * distil
            + 2 * p["seeds"] * bench.gpu_eval_seconds(figures, 10 * ipc, epochs)
        )
    if gpu_row.bracket:
        return START_SECONDS + bench.gpu_seconds(bracket_step(gpu_row.bracket, gpu_row.bracket.ipcs[0]), figures)
    return START_SECONDS + bench.gpu_seconds(gpu_row.row, figures)


def batches(rows: tuple[GpuRow, ...]) -> list[list[GpuRow]]:
    """Consecutive rows of one batch, in priority order."""
    out: list[list[GpuRow]] = []
    for row in rows:
        if out and out[-1][0].batch == row.batch:
            out[-1].append(row)
        else:
            out.append([row])
    return out


def missing_targets(batch: list[GpuRow], done: set[str]) -> str:
    """Why a batch cannot start yet: a bracket whose target row has not run ("" when none)."""
    missing = sorted({r.bracket.target for r in batch if r.bracket and r.bracket.target not in done})
    return f"needs {', '.join(missing)}, which did not run" if missing else ""


def batch_estimate(batch: list[GpuRow], figures: dict[str, float]) -> float:
    longest = max(estimate(row, figures) for row in batch)
    return longest * (CONTENTION if len(batch) > 1 else 1.0)


def figures_from(lines: list[dict], figures: dict[str, float]) -> dict[str, float]:
    """`figures` with what the probe measured in place of the guesses."""
    measured = dict(figures)
    for line in lines:
        if line.get("kind") == "probe" and line.get("precision", "fp32") == "fp32":
            measured.update(line.get("figures", {}))
    return measured


# --- running --------------------------------------------------------------------------------------


def append_line(line: dict, out: Path) -> None:
    """One finished row into OUT/results.jsonl at once (rows of a batch append from several processes)."""
    with (out / "results.jsonl").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(line) + "\n")


def read_lines(out: Path) -> list[dict]:
    return bench.load_results(out / "results.jsonl")


def gpu_fields() -> dict:
    """What every line records besides the suite's own: the accelerator and its software."""
    import torch

    return {"cuda": torch.version.cuda, "suite": "gpu_suite"}


def run_row(gpu_row: GpuRow, profile: Profile, out: Path) -> None:
    """One row in this process; its line(s) appended as they finish."""
    if gpu_row.probe:
        return run_probe(gpu_row, profile, out)
    if gpu_row.bracket:
        return run_bracket(gpu_row, profile, out)
    append_line(measure(gpu_row.row, profile, out), out)


def measure(row: Row, profile: Profile, out: Path) -> dict:
    """A suite row run here, recorded in the suite's format (its MLflow run a folder under OUT/runs)."""
    started, load = time.perf_counter(), os.getloadavg()[0]
    measured = bench.run_row(row, f"{bench.FOLDER_STORE}{out / 'runs'}", profile.device, BenchFolder(out))
    line = bench.record(row, measured, load, os.getloadavg()[0], True, time.perf_counter() - started)
    return {**line, **gpu_fields()}


def run_bracket(gpu_row: GpuRow, profile: Profile, out: Path, deadline: float | None = None) -> None:
    """IPC after IPC until lossless, or until the next would end past the deadline; a line per IPC and one
    for the bracket (the largest IPC reached and its gap when none was lossless)."""
    from orchestrator.engine.ipc_search import decide

    bracket = gpu_row.bracket
    deadline = deadline or float(os.environ.get("GPU_SUITE_DEADLINE", "inf"))
    target = next(
        (line for line in read_lines(out) if line.get("name") == bracket.target and line.get("kind") == "baseline"),
        None,
    )
    if target is None:
        raise SystemExit(f"{gpu_row.name}: its target row {bracket.target} has not run in this call")
    threshold = target["mean"] - bracket.tolerance / 100
    steps, decision = [], None
    figures = figures_from(read_lines(out), profile.figures)
    for ipc in bracket.ipcs:
        step = bracket_step(bracket, ipc)
        if time.time() + START_SECONDS + bench.gpu_seconds(step, figures) > deadline:
            break
        line = measure(step, profile, out)
        append_line(line, out)
        decision = decide(line["mean"], line["std"], line["seeds"], threshold)
        steps.append({"ipc": ipc, "mean": line["mean"], "lossless": decision.lossless})
        if decision.lossless:
            break
    lossless = [s["ipc"] for s in steps if s["lossless"]]
    append_line(
        {
            "kind": "lossless",
            "name": gpu_row.name,
            **asdict(bracket),
            "target_mean": target["mean"],
            "threshold": threshold,
            "steps": steps,
            "smallest_lossless_ipc": lossless[0] if lossless else None,
            "largest_ipc_reached": steps[-1]["ipc"] if steps else None,
            "gap_points": 100 * (threshold - steps[-1]["mean"]) if steps and not lossless else None,
            "machine": hardware.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            **gpu_fields(),
        },
        out,
    )


def run_probe(gpu_row: GpuRow, profile: Profile, out: Path) -> None:
    """Throughput: DataDAM iterations/s per data set, IPC and precision, then packed against sequential
    evaluation; one line per precision with the figures later estimates use."""
    import torch

    from ddcore.data import load_dataset

    p = gpu_row.probe
    loaded = {}
    for precision in p["precisions"]:
        measured = {}
        for dataset, ipc in p["datadam"]:
            data = loaded.setdefault(dataset, load_dataset(dataset))
            its = datadam_speed(data, ipc, precision, p["iterations"], profile.device)
            measured[f"its:{dataset}:ipc{ipc}"] = its
            print(f"probe: DataDAM {dataset} IPC {ipc} {precision}: {its:.1f} it/s", flush=True)
        if precision == "fp32":
            dataset, ipc, epochs = p["eval"]
            data = loaded.setdefault(dataset, load_dataset(dataset))
            measured.update(eval_speed(data, ipc, epochs, p["seeds"], profile.device))
        append_line(
            {
                "kind": "probe",
                "name": f"probe_{precision}",
                "row": gpu_row.name,
                "precision": precision,
                "figures": measured,
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                "machine": hardware.machine(),
                "date": time.strftime("%Y-%m-%d %H:%M"),
                **gpu_fields(),
            },
            out,
        )


def datadam_speed(data, ipc: int, precision: str, iterations: int, device: str) -> float:
    """Iterations/s of DataDAM's `paper` preset: `iterations` to warm up, then `iterations` timed (the
    loop reads the losses back at each window's end, so the two stamps follow finished work)."""
    from ddcore.methods import get_method

    overrides = {"iterations": 2 * iterations, "log_every": iterations, "device": device, "bf16": precision == "bf16"}
    config = get_method("datadam").config("paper", data.name, ipc).with_overrides(**overrides)
    stamps: list[float] = []
    get_method("datadam").distill(data, config, callback=lambda _report: stamps.append(time.perf_counter()))
    return iterations / (stamps[1] - stamps[0])


def eval_speed(data, ipc: int, epochs: int, seeds: int, device: str) -> dict[str, float]:
    """Seconds per 1000-epoch seed (DC's protocol) on a random IPC-`ipc` real set: all seeds as one wide
    network against one by one; `eval_step` is the packed step time per seed, for estimates."""
    import torch

    from ddcore.evaluate import get_protocol, train_and_test_seeds
    from ddcore.runtime import resolve_device

    picked = torch.cat([indices[:ipc] for indices in data.class_indices])
    images, labels = data.train_images[picked], data.train_labels[picked]
    protocol = get_protocol("dc", epochs=epochs)
    seconds = {}
    for name, packed in (("packed", True), ("sequential", False)):
        args = ("ConvNetD3", images, labels, data, protocol, tuple(range(seeds)), resolve_device(device))
        started = time.perf_counter()
        train_and_test_seeds(*args, batch_seeds=packed)
        seconds[name] = (time.perf_counter() - started) / seeds * 1000 / epochs
        print(f"probe: evaluation, {name}: {seconds[name]:.1f} s per 1000-epoch seed ({seeds} seeds)", flush=True)
    steps = 1000 * math.ceil(len(picked) / 256)
    return {
        "eval_seed_seconds_packed": seconds["packed"],
        "eval_seed_seconds_sequential": seconds["sequential"],
        "eval_step": seconds["packed"] / steps,
    }


@dataclass
class Outcome:
    name: str
    state: str  # done | skipped | failed | stopped
    estimate: float
    seconds: float = 0.0
    note: str = ""


def run_suite(profile: Profile, out: Path, budget: float, names: set[str] | None = None) -> list[Outcome]:
    """The batches in order, each started only when its estimate ends inside the budget."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    deadline = started + budget
    outcomes: list[Outcome] = []
    rows = tuple(r for r in profile.rows if names is None or r.name in names)
    for batch in batches(rows):
        lines = read_lines(out)
        figures = figures_from(lines, profile.figures)
        needed, left = batch_estimate(batch, figures), deadline - time.time()
        waiting = missing_targets(batch, {line.get("name") for line in lines})
        if waiting:
            outcomes += [Outcome(r.name, "skipped", estimate(r, figures), note=waiting) for r in batch]
            print(f"skip {', '.join(r.name for r in batch)}: {waiting}", flush=True)
            continue
        if needed > left:
            outcomes += [Outcome(r.name, "skipped", estimate(r, figures), note=f"{left:.0f} s left") for r in batch]
            print(f"skip {', '.join(r.name for r in batch)}: estimate {needed:.0f} s, {left:.0f} s left", flush=True)
            continue
        print(f"start {', '.join(r.name for r in batch)} (estimate {needed:.0f} s, {left:.0f} s left)", flush=True)
        outcomes += run_batch(batch, profile, out, deadline, figures)
    return outcomes


def run_batch(batch: list[GpuRow], profile: Profile, out: Path, deadline: float, figures: dict) -> list[Outcome]:
    """The batch's rows as processes; those alive at the deadline are stopped (SIGTERM: their run ends
    FAILED with the reason, as a Ctrl-C would)."""
    threads = max(1, (os.cpu_count() or 1) // len(batch))  # the host's cores shared, not oversubscribed
    env = {**os.environ, "GPU_SUITE_DEADLINE": str(deadline), "OMP_NUM_THREADS": str(threads)}
    procs = {}
    for row in batch:
        command = [sys.executable, __file__, "--row", row.name, "--profile", profile.name, "--out", str(out)]
        procs[row.name] = (subprocess.Popen(command, env=env), time.time())
    outcomes = []
    for row in batch:
        proc, began = procs[row.name]
        try:
            code = proc.wait(timeout=max(0.0, deadline - time.time()))
            state = "done" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            state = "stopped"
        outcomes.append(Outcome(row.name, state, estimate(row, figures), time.time() - began))
    return outcomes


def headline(name: str, lines: list[dict]) -> str:
    """The row's result in a few words, from its last line (a probe line per precision names its row)."""
    found = [line for line in lines if line.get("row", line.get("name")) == name]
    if not found:
        return ""
    line = found[-1]
    if line["kind"] == "probe":
        return ", ".join(f"{k} {v:.3g}" for k, v in line["figures"].items())
    if line["kind"] == "lossless":
        if line["smallest_lossless_ipc"]:
            return f"lossless at IPC {line['smallest_lossless_ipc']}"
        return f"largest IPC {line['largest_ipc_reached']}, gap {line['gap_points'] or 0:.2f} points"
    return f"{100 * line['mean']:.2f} ± {100 * line['std']:.2f} % ({line['seeds']} seeds)"


def summary(outcomes: list[Outcome], out: Path, wall: float) -> str:
    lines = read_lines(out)
    text = [f"GPU suite: {len(lines)} line(s) in {out / 'results.jsonl'}, {wall:.0f} s wall"]
    for o in outcomes:
        took = f"{o.seconds:.0f} s" if o.seconds else "-"
        text.append(f"  {o.name:30} {o.state:8} est {o.estimate:5.0f} s  took {took:>6}  {headline(o.name, lines)}")
    return "\n".join(text)


def write_env(out: Path, device: str) -> dict:
    """OUT/env.json: where the rows ran (GPU, driver, torch, CUDA, cuDNN, Python, cores)."""
    import platform

    import torch

    env = {
        "machine": hardware.machine(),
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        query = "--query-gpu=name,driver_version,memory.total,compute_cap"
        env["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        env["nvidia_smi"] = None
    (out / "env.json").write_text(json.dumps(env, indent=1))
    return env


PIECE_BYTES = 15 * 2**20  # a call brings back at most 8 files of 16 MiB, two folders down


def pack_runs(out: Path, max_pieces: int = 3) -> list[Path]:
    """OUT/runs/ packed to come back: `runs.tar.gz` without the synthetic sets (params, metrics, grids,
    summaries), the sets in `sets.tar.gz.NN` pieces of 15 MiB (`cat sets.tar.gz.* | tar xz`); sets past
    `max_pieces` pieces stay behind (their numbers are in results.jsonl either way)."""
    runs = out / "runs"
    if not runs.is_dir():
        return []
    with tarfile.open(out / "runs.tar.gz", "w:gz") as archive:
        archive.add(runs, arcname="runs", filter=lambda info: None if info.name.endswith("synthetic.pt") else info)
    sets = out / "sets.tar.gz"
    with tarfile.open(sets, "w:gz") as archive:
        for path in sorted(runs.rglob("synthetic.pt")):
            archive.add(path, arcname=str(path.relative_to(out)))
    data = sets.read_bytes()
    sets.unlink()
    pieces = []
    for number, start in enumerate(range(0, min(len(data), max_pieces * PIECE_BYTES), PIECE_BYTES)):
        pieces.append(out / f"sets.tar.gz.{number:02d}")
        pieces[-1].write_bytes(data[start : start + PIECE_BYTES])
    if len(data) > max_pieces * PIECE_BYTES:
        print(f"sets past {max_pieces * 15} MiB left behind (the rows' numbers are in results.jsonl)", flush=True)
    return pieces


def dry_run(profile: Profile, budget: float) -> str:
    """Each batch with its estimate (from the figures above) and what the budget leaves out."""
    used, ran = 0.0, set()
    text = [f"plan for {profile.name} ({profile.device}), budget {budget:.0f} s, estimates from its figures:"]
    for batch in batches(profile.rows):
        needed = batch_estimate(batch, profile.figures)
        waiting = missing_targets(batch, ran)
        fits = used + needed <= budget and not waiting
        if fits:
            used += needed
            ran.update(r.name for r in batch)
        names = ", ".join(r.name for r in batch)
        why = f" ({waiting})" if waiting else ""
        text.append(f"  {'run ' if fits else 'SKIP'} {needed:6.0f} s  (total {used:4.0f} s)  {names}{why}")
    return "\n".join(text)


# --- importing what a call brought back ----------------------------------------------------------


GPU_BEGIN = (
    "<!-- gpu probe and lossless tables: generated by `python benchmarks/gpu_suite.py --import`; do not edit -->"
)
GPU_END = "<!-- end of gpu tables -->"


def render_gpu_tables(lines: list[dict]) -> str:
    """The probe's figures and the lossless brackets, from gpu_results.jsonl (the GPU trial rows are in
    the suite's tables, groups "GPU: ...")."""
    out = [
        "### GPU throughput probe",
        "",
        "| machine | date | precision | figure | value |",
        "| --- | --- | --- | --- | --- |",
    ]
    for line in (x for x in lines if x["kind"] == "probe"):
        for name, value in line["figures"].items():
            out.append(f"| {line['machine']} | {line['date']} | {line['precision']} | `{name}` | {value:.4g} |")
    out += ["", "### GPU lossless brackets", "", "| bracket | target % | IPC: mean % | answer | machine |"]
    out.append("| --- | --- | --- | --- | --- |")
    for line in (x for x in lines if x["kind"] == "lossless"):
        steps = ", ".join(f"{s['ipc']}: {100 * s['mean']:.2f}" for s in line["steps"])
        answer = (
            f"lossless at IPC {line['smallest_lossless_ipc']}"
            if line["smallest_lossless_ipc"]
            else f"not lossless up to IPC {line['largest_ipc_reached']} (gap {line['gap_points'] or 0:.2f} points)"
        )
        out.append(f"| `{line['name']}` | {100 * line['target_mean']:.2f} | {steps} | {answer} | {line['machine']} |")
    return "\n".join(out)


def import_lines(
    folder: Path, results: Path = BENCH.results, gpu_results: Path = GPU_RESULTS, results_md: Path = BENCH.results_md
) -> int:
    """Trial and baseline lines into results.jsonl (the suite's tables show them), probe and lossless
    lines into gpu_results.jsonl; lines already there are not added twice. RESULTS.md's tables follow."""
    count = 0
    for line in read_lines(folder):
        target = results if line.get("kind") in ("trial", "baseline") else gpu_results
        if line not in bench.load_results(target):
            bench.append(line, target)
            count += 1
    update_results_md(bench.load_results(results), bench.load_rows(BENCH.rows), results_md)
    gpu_tables = render_gpu_tables(bench.load_results(gpu_results))
    replace_section(results_md, GPU_BEGIN, GPU_END, gpu_tables, "GPU suite (generated)")
    return count


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="gpu")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench_out")))
    parser.add_argument("--budget-seconds", type=float, default=None, help="default: the profile's")
    parser.add_argument("--rows", help="comma-separated row names (default: all, in priority order)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its estimates; run nothing")
    parser.add_argument("--import", dest="import_from", type=Path, help="add a call's OUT/results.jsonl here")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # a row process, started by the suite
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    profile = PROFILES[args.profile]
    budget = args.budget_seconds or profile.budget_seconds
    if args.import_from:
        print(f"{import_lines(args.import_from)} line(s) added; RESULTS.md tables regenerated")
        return
    if args.dry_run:
        print(dry_run(profile, budget))
        return
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.row:
        row = next(r for r in profile.rows if r.name == args.row)
        return run_row(row, profile, args.out)
    names = set(args.rows.split(",")) if args.rows else None
    unknown = (names or set()) - {r.name for r in profile.rows}
    if unknown:
        raise SystemExit(f"error: unknown row(s) {', '.join(sorted(unknown))}; --dry-run lists them")
    args.out.mkdir(parents=True, exist_ok=True)
    write_env(args.out, profile.device)
    started = time.time()
    outcomes = run_suite(profile, args.out, budget, names)
    pack_runs(args.out)
    text = summary(outcomes, args.out, time.time() - started)
    (args.out / "summary.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
