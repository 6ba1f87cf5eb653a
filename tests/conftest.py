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
