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


def test_kuberay_manifest_has_token_auth_a_tracking_server_and_a_ddorch_driver():
    """Not applied anywhere (no Kubernetes here): its structure, with the compose file's settings."""
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all((DOCKER / "kuberay.yaml").read_text())}
    server = documents["Deployment"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert server[:2] == ["ddorch", "server"] and "--artifacts-destination" in server and "--allowed-hosts" in server
    job = documents["RayJob"]["spec"]
    assert (
        job["entrypoint"].startswith("ddorch sweep ")
        and "--tracking-uri http://ddorch-mlflow:5000" in job["entrypoint"]
    )
    cluster = job["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token"}
    for pod in (cluster["headGroupSpec"], *cluster["workerGroupSpecs"]):
        (container,) = pod["template"]["spec"]["containers"]
        assert {"name": "MLFLOW_TRACKING_URI", "value": "http://ddorch-mlflow:5000"} in container["env"]
        assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]
