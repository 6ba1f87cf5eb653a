"""bf16 where the hardware computes it natively: the capability answer on mocked processors, the one-line
refusal before any run exists, `--force-bf16` recorded, and a sweep trial failing with the reason."""

from dataclasses import replace

import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ddcore import hardware
from ddcore.errors import DDError
from ddcore.hardware import CpuReport, GpuReport, cpu_bf16, gpu_bf16, require_native_bf16
from ddcore.methods import get_method
from orchestrator.cli import app
from orchestrator.engine.sweep import SweepContext, build_trial
from orchestrator.engine.trial import bf16_asked, run_trial
from orchestrator.store.run_schema import Status, Tag
from orchestrator.store.tracking import Tracker
from tests.test_bad_input import RUN, no_runs
from tests.test_sweep import tiny_preset

AVX2 = CpuReport("AMD EPYC", "AVX2", frozenset({"avx", "avx2", "fma"}))
AVX512 = CpuReport("Intel Xeon", "AVX512", frozenset({"avx2", "avx512f", "avx512bw"}))
AVX512_BF16 = CpuReport("AMD EPYC", "AVX512", frozenset({"avx2", "avx512f", "avx512_bf16"}))
AMX = CpuReport("Intel Xeon", "AVX512", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))


@pytest.mark.parametrize(
    "cpu, native, processor",
    [
        (AVX2, False, "AMD EPYC (AVX2)"),
        (AVX512, False, "Intel Xeon (AVX512)"),
        (AVX512_BF16, True, "AMD EPYC (AVX512 + AVX512-BF16)"),
        (AMX, True, "Intel Xeon (AVX512 + AVX512-BF16 + AMX)"),
    ],
)
def test_cpus_are_native_with_avx512_bf16_or_amx(cpu, native, processor):
    support = cpu_bf16(cpu)
    assert (support.native, support.processor) == (native, processor)
    assert support.lacks == ("" if native else "AVX512-BF16 and AMX")


def test_gpus_are_native_from_compute_capability_8_0():
    ampere = gpu_bf16(GpuReport(0, "NVIDIA A100-SXM4-40GB", 39.4, (8, 0)))
    turing = gpu_bf16(GpuReport(1, "Tesla T4", 14.6, (7, 5)))
    assert ampere.native and ampere.processor == "NVIDIA A100-SXM4-40GB (compute capability 8.0)"
    assert not turing.native and turing.lacks == "bf16 tensor cores (compute capability 8.0 or later)"
    assert "Tesla T4 (compute capability 7.5), which lacks bf16 tensor cores" in turing.refusal("bf16 evaluation")


def test_the_refusal_names_the_processor_what_it_lacks_and_the_measured_cost(avx2_cpu):
    with pytest.raises(DDError) as refused:
        require_native_bf16("bf16 evaluation", torch.device("cpu"), force=False)
    line = str(refused.value)
    assert "\n" not in line
    assert line.startswith("bf16 evaluation asked for on AMD EPYC (AVX2), which lacks AVX512-BF16 and AMX")
    assert "27x slower than fp32" in line and "124.7 s vs 4.53 s" in line and "benchmarks/RESULTS.md" in line
    assert line.endswith("add --force-bf16 to run it anyway")
    forced = require_native_bf16("bf16 evaluation", torch.device("cpu"), force=True)
    assert forced == "bf16 evaluation forced on AMD EPYC (AVX2), which lacks AVX512-BF16 and AMX"


def test_native_bf16_passes_untouched(amx_cpu):
    assert require_native_bf16("bf16 evaluation", torch.device("cpu"), force=False) is None


def test_this_machines_cpu_is_read_as_torch_reports_it():
    cpu = hardware.cpu_report()
    assert cpu.name and cpu.capability == torch.backends.cpu.get_cpu_capability()
    assert cpu.isa().startswith(cpu.capability)


@pytest.mark.parametrize(
    "flags, asked",
    [
        (["--bf16"], "bf16 distillation forwards"),
        (["--eval-precision", "bf16"], "bf16 evaluation"),
        (["--set", "bf16=true", "--eval-precision", "bf16"], "bf16 distillation forwards and evaluation"),
    ],
)
def test_run_refuses_bf16_the_cpu_lacks_before_a_run_exists(workspace, avx2_cpu, flags, asked):
    result = CliRunner().invoke(app, [*RUN, *flags], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {asked} asked for on AMD EPYC (AVX2)"), result.output
    assert no_runs(workspace)


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "digits_datadam", "--set", "bf16=true"],
        ["sweep", "digits_datadam", "--eval-precision", "bf16", "--dry-run"],
        ["lossless", "--dataset", "digits", "--eval-precision", "bf16", "--target-accuracy", "90"],
        ["lossless", "--dataset", "digits", "--eval-precision", "bf16", "--dry-run"],
    ],
)
def test_local_sweeps_and_searches_refuse_it_before_ray_or_a_run(workspace, avx2_cpu, args):
    import ray

    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: bf16 "), result.output
    assert "lacks AVX512-BF16 and AMX" in result.output
    assert no_runs(workspace) and not ray.is_initialized()


@pytest.mark.parametrize(
    "args, environment",
    [
        (
            [
                "lossless",
                "--dataset",
                "digits",
                "--max-ipc",
                "50",
                "--eval-precision",
                "bf16",
                "--address",
                "127.0.0.1:9",
            ],
            {},
        ),
        (["sweep", "digits_datadam", "--eval-precision", "bf16"], {"RAY_ADDRESS": "127.0.0.1:9"}),
    ],
)
def test_on_a_cluster_the_workers_hardware_decides_not_this_machines(workspace, avx2_cpu, args, environment):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200", **environment})
    assert result.exit_code == 2 and "cannot reach the Ray cluster" in result.output, result.output
    assert "bf16" not in result.output


def test_force_runs_it_and_the_run_records_that_it_was_forced(workspace, avx2_cpu):
    args = [*RUN, "--bf16", "--eval-precision", "bf16", "--force-bf16", "--no-baseline"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
    assert run.info.status == Status.FINISHED
    assert run.data.tags[Tag.BF16_FORCED] == (
        "bf16 distillation forwards and evaluation forced on AMD EPYC (AVX2), which lacks AVX512-BF16 and AMX"
    )
    assert run.data.params["force_bf16"] == "True"
    assert "--bf16 --force-bf16" in run.data.tags[Tag.NOTE]  # the command that reproduces it


def test_native_bf16_records_nothing_forced(workspace, amx_cpu):
    result = CliRunner().invoke(app, [*RUN, "--bf16", "--no-baseline"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
    assert Tag.BF16_FORCED not in run.data.tags


def test_a_sweep_trial_fails_with_the_reason_before_it_distils(tmp_path, avx2_cpu, monkeypatch):
    """What a sweep's Ray trial runs (`build_trial`, then `run_trial` on the worker's own hardware)."""
    distilled = []
    monkeypatch.setattr(type(get_method("datadam")), "distill", lambda *args, **kwargs: distilled.append(1))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = SweepContext(uri, "ddorch", "parent", str(tmp_path / "runs"), None, device="cpu")
    trial = build_trial(tiny_preset(precision="bf16"), {}, context)
    tracker = Tracker.start(uri)
    with pytest.raises(DDError):
        run_trial(trial, tracker, progress=False, output_dir=tmp_path / "runs")
    run = tracker.client.get_run(tracker.run_id)
    assert run.info.status == Status.FAILED and not distilled
    assert run.data.tags[Tag.FAILURE].startswith("bf16 evaluation asked for on AMD EPYC (AVX2), which lacks")
    forced = build_trial(tiny_preset(precision="bf16"), {}, replace(context, force_bf16=True))
    assert forced.force_bf16 and bf16_asked(forced) == "bf16 evaluation"


def test_cross_arch_refuses_it_before_its_child_run(tiny_runs, avx2_cpu):
    uri, run_ids, _ = tiny_runs
    client = MlflowClient(uri)
    runs_before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    args = ["cross-arch", run_ids[0], "--eval-models", "MLP", "--eval-precision", "bf16", "--tracking-uri", uri]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2 and result.output.startswith("error: bf16 evaluation asked for on AMD EPYC (AVX2)")
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == runs_before
