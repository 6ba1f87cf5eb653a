"""`ddorch experiments` and `ddorch show`: the named experiment presets."""

from __future__ import annotations

import typer

from orchestrator.views import tables
from orchestrator.views.tables import console


def experiments() -> None:
    """List the named experiment presets (the shipped `experiments/`; `$DDORCH_PRESETS/experiments/` first).

    Example: ddorch experiments | cat
    """
    from orchestrator.engine.experiments import list_experiments, load_experiment

    presets = [load_experiment(name) for name in list_experiments()]
    rows = (
        [
            p.name,
            p.dataset,
            p.method,
            p.space,
            str(p.num_samples),
            f"{p.cpus_per_trial:g} CPU, {p.gpus_per_trial:g} GPU",
        ]
        for p in presets
    )
    columns = ("name", "data set", "method", "space", "trials", "per trial")
    tables.show(tables.table("Experiments (ddorch sweep <name>)", columns, rows, first_left=True))


def show(experiment: str = typer.Argument(..., help="An experiment name from `ddorch experiments`.")) -> None:
    """Print an experiment's resolved configuration and search space.

    Example: ddorch show digits_datadam
    """
    import json
    from dataclasses import asdict

    from orchestrator.engine.experiments import load_experiment, load_space

    preset = load_experiment(experiment)
    space = load_space(preset.space, preset.method, preset.dataset, preset.preset, preset.fixed)
    console.print_json(
        json.dumps({"preset": asdict(preset), "space": [asdict(d) for d in space.distributions]}, default=str)
    )
