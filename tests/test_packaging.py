"""The built wheel, installed without the source tree, carries the presets, search spaces and studies
(edited in the top-level experiments/, tune_spaces/ and studies/, shipped as orchestrator/presets/<folder>)
and the command line's flags.toml."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installed_elsewhere_lists_and_shows_the_presets(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(wheels),
        str(ROOT),
    ]
    subprocess.run(build, check=True, capture_output=True, cwd=tmp_path)
    wheel = next(wheels.glob("ddorch-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    # Run from an empty folder with the installed copy first on the path (not the source tree).
    probe = (
        "import orchestrator, orchestrator.engine.experiments as e; "
        "print(orchestrator.__file__); print(e.list_experiments()); print(e.shipped_folder('tune_spaces')); "
        "print(e.load_experiment('mnist_datadam').space, len(e.load_space('datadam.toml', 'datadam').distributions)); "
        "import orchestrator.engine.study as s; print(sorted(x.name for x in s.list_studies())); "
        "print(s.find_study('project-a')); "
        "import orchestrator.cli.server as c; print(c.ServerSettings())"  # the option groups' flags.toml
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("DDORCH_PRESETS", None)
    result = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path, env=env
    )
    location, names, spaces, space, studies, project_a, server = result.stdout.splitlines()
    assert location.startswith(str(site)), location  # the installed package, not the checkout
    assert spaces == str(site / "orchestrator" / "presets" / "tune_spaces"), spaces
    assert "digits_datadam" in names and "mnist_pad" in names
    assert space.startswith("datadam.toml ") and int(space.split()[1]) > 0
    from orchestrator.engine.study import load_study  # the shipped studies: every file of studies/, by its name

    assert studies == str(sorted(load_study(path).name for path in (ROOT / "studies").glob("*.toml"))), studies
    assert project_a == str(site / "orchestrator" / "presets" / "studies" / "project_a.toml"), project_a
    assert server.startswith("ServerSettings(host='127.0.0.1', port=5000"), server
