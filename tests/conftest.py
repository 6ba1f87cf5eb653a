"""Shared fixtures."""

import pytest


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh working directory: its own MLflow store (./mlflow.db), baseline cache, no Ray left behind."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def avx2_cpu(monkeypatch):
    """This machine's CPU as an AVX2-only one (no native bf16), wherever the tests run."""
    from ddcore import hardware

    cpu = hardware.CpuReport("AMD EPYC", "AVX2", frozenset({"avx", "avx2", "fma"}))
    monkeypatch.setattr(hardware, "cpu_report", lambda: cpu)
    return cpu


@pytest.fixture
def amx_cpu(monkeypatch):
    """This machine's CPU as one with AMX (native bf16), wherever the tests run."""
    from ddcore import hardware

    cpu = hardware.CpuReport("Intel Xeon", "AVX512", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
    monkeypatch.setattr(hardware, "cpu_report", lambda: cpu)
    return cpu


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """Two finished digits runs (real init, IPC 1 and 2) in a store of their own; the
    second also holds its own cross-architecture matrix (a sweep preset's `cross_arch_models`).
    Returns (tracking URI, [run ids], output dir). Tiny on purpose: a few iterations and epochs."""
    from ddcore.evaluate import EvalSpec
    from orchestrator.engine.resolve import Layers, resolve_trial
    from orchestrator.engine.trial import run_trial
    from orchestrator.store.tracking import Tracker

    folder = tmp_path_factory.mktemp("tiny_runs")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    run_ids = []
    for ipc, cross_arch in ((1, []), (2, ["MLP"])):
        flags = dict(iterations=3, batch_real=8, model="ConvNetD1", init="real", device="cpu", log_every=1)
        trial = resolve_trial(
            "datadam",
            "digits",
            "paper",
            ipc,
            EvalSpec(("ConvNetD1",), seeds=1, epochs=2),
            Layers(flags=flags),
            baseline=False,
            cross_arch_models=cross_arch,
        )
        tracker = Tracker.start(uri, run_name=f"tiny-ipc{ipc}")
        run_ids.append(run_trial(trial, tracker, progress=False, output_dir=folder / "runs").run_id)
    return uri, run_ids, folder / "runs"
