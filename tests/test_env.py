"""`ddorch env`: every field as plain text, with and without GPUs, without Ray or MLflow; `--calibrate`."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ddcore import hardware
from orchestrator.cli import app

FIELDS = (
    "ddorch",
    "versions",
    "platform",
    "CPU",
    "CPU ISA",
    "CPU precisions",
    "data root",
    "data sets found",
    "data sets not found",
    "tracking URI",
    "cache folder",
)


def env(tmp_path, *args):
    """`ddorch env` with an empty data root (only the bundled digits is found)."""
    result = CliRunner().invoke(
        app,
        ["env", "--data-root", str(tmp_path / "data"), "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}", *args],
        env={"COLUMNS": "200", "DDORCH_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert result.exit_code == 0, result.output
    return dict(line.split(": ", 1) for line in result.output.splitlines() if not line.startswith(" "))


def test_every_field_on_a_cpu_only_machine(tmp_path, avx2_cpu, monkeypatch):
    monkeypatch.setattr(hardware, "gpu_reports", lambda: [])
    fields = env(tmp_path)
    assert [name for name in FIELDS if name not in fields] == []
    assert all(f"{package} " in fields["versions"] for package in ("torch", "ray", "mlflow"))
    assert fields["CPU"].startswith("AMD EPYC, ") and " cores " in fields["CPU"] and "torch uses" in fields["CPU"]
    assert fields["CPU ISA"] == "AVX2 (torch's kernels: AVX2)"
    assert fields["CPU precisions"].startswith("fp32; bf16 not native (lacks AVX512-BF16 and AMX")
    assert fields["GPUs"] == "none visible to torch (CUDA)"
    assert fields["data sets found"].startswith("digits (1258 train / 539 test")
    assert fields["data sets not found"].startswith("mnist, ") and "mhist" in fields["data sets not found"]
    assert fields["tracking URI"] == f"sqlite:///{tmp_path / 'x.db'}" and not (tmp_path / "x.db").exists()
    assert fields["cache folder"] == str(tmp_path / "cache")


def test_gpus_with_name_memory_compute_capability_and_precisions(tmp_path, amx_cpu, monkeypatch):
    gpus = [hardware.GpuReport(0, "NVIDIA H100", 79.2, (9, 0)), hardware.GpuReport(1, "Tesla T4", 14.6, (7, 5))]
    monkeypatch.setattr(hardware, "gpu_reports", lambda: gpus)
    fields = env(tmp_path)
    assert fields["CPU precisions"] == "fp32, bf16 (native)"
    assert fields["GPU 0"] == "NVIDIA H100, 79.2 GiB, compute capability 9.0"
    assert fields["GPU 0 precisions"] == "fp32, bf16 (native)"
    assert fields["GPU 1 precisions"].startswith("fp32; bf16 not native (lacks bf16 tensor cores")


def test_it_neither_imports_nor_starts_ray_or_mlflow(tmp_path):
    code = (
        "import sys; from typer.testing import CliRunner; from orchestrator.cli import app; "
        f"r = CliRunner().invoke(app, ['env', '--data-root', {str(tmp_path)!r}]); "
        "print(r.exit_code, sorted(m for m in ('ray', 'mlflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout + done.stderr


@pytest.mark.parametrize("cpu_fixture, precisions", [("avx2_cpu", ["fp32"]), ("amx_cpu", ["fp32", "bf16"])])
def test_calibrate_times_each_native_precision_as_the_dry_runs_do(
    tmp_path, monkeypatch, request, cpu_fixture, precisions
):
    request.getfixturevalue(cpu_fixture)
    monkeypatch.setattr(hardware, "gpu_reports", lambda: [])
    result = CliRunner().invoke(app, ["env", "--calibrate", "--data-root", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    calibration = lines[lines.index("calibration on digits (cpu), as `--dry-run` does:") + 1 :]
    assert [line.split(":")[0].strip() for line in calibration] == [p for p in precisions for _ in range(2)]
    assert all("per image per distillation iteration datadam" in line for line in calibration[::2])
    assert all("predicts a DataDAM iteration of" in line for line in calibration[1::2])
