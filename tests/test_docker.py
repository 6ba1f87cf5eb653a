"""The compose file and Dockerfile, checked as data (no Docker engine runs here)."""

from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def test_compose_has_head_workers_and_mlflow_on_loopback_only():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"mlflow", "ray-head", "ray-worker"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        assert service["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert service["environment"]["RAY_AUTH_MODE"] == "token"
        assert service["shm_size"]
    assert "--address=ray-head:6379" in services["ray-worker"]["command"]
    assert "--allowed-hosts" in services["mlflow"]["command"] and "mlflow" in services["mlflow"]["command"]


def test_dockerfile_builds_on_ray_image_and_installs_the_project():
    text = (DOCKER / "Dockerfile").read_text()
    assert "FROM rayproject/ray:${RAY_VERSION}-py311-${FLAVOR}" in text
    for folder in ("ddcore", "orchestrator", "experiments", "tune_spaces"):
        assert f"COPY --chown=ray:users {folder} {folder}" in text
    assert "pip install --no-cache-dir -e ." in text
