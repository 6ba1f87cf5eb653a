"""Conventions every command follows: full names in tables, run-id prefixes, help with defaults and
an example, one flag name per concept, `ddorch runs`."""

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from ddcore.errors import DDError
from orchestrator.cli import app
from orchestrator.store.runs import find_run
from orchestrator.store.tracking import resolve_tracking_uri

runner = CliRunner()


def leaf_commands(group: TyperGroup, prefix: str = "") -> dict:
    """Every command by its full name; a sub-app's commands as `bench list`, ..."""
    found = {}
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            found.update(leaf_commands(command, f"{prefix}{name} "))
        else:
            found[f"{prefix}{name}"] = command
    return found


COMMANDS = leaf_commands(typer.main.get_command(app))


def invoke(args, columns=200):
    return runner.invoke(app, args, env={"COLUMNS": str(columns)})


def test_piped_tables_keep_full_names_at_any_width():
    for columns in (40, 200):
        result = invoke(["experiments"], columns)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert any(line.startswith("digits_datadam ") and "datadam_quick.toml" in line for line in lines)
        assert "…" not in result.output and "│" not in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_says_what_it_does_and_its_default(name):
    command = COMMANDS[name]
    assert "Example: ddorch " in command.help
    for option in (p for p in command.params if isinstance(p, TyperOption) and not p.hidden):
        assert option.help, f"{name} {option.opts}"
        if option.default is None and not option.is_flag:  # typer shows the others' defaults itself
            assert "default" in option.help.lower(), f"{name} {option.opts}"


def test_one_flag_name_per_concept_old_spellings_still_parse():
    flags = {opt for command in COMMANDS.values() for p in command.params for opt in p.opts}
    assert not flags & {"--seeds", "--models", "--pool", "--out"}
    assert "--eval-seeds" in invoke(["cross-arch", "--help"]).output
    old = invoke(["cross-arch", "0123abcd", "--seeds", "0"])
    assert old.exit_code == 2 and "'--eval-seeds'" in old.output


def test_runs_lists_recent_runs_and_prefixes_work(tiny_runs, tmp_path):
    uri, run_ids, _ = tiny_runs
    listed = invoke(["runs", "--tracking-uri", uri, "--limit", "5"], columns=40)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[1].split() == ["id", "name", "status", "data", "set", "method", "IPC", "accuracy", "%", "started"]
    newest = lines[2].split()
    assert newest[:6] == [run_ids[1][:8], "tiny-ipc2", "finished", "digits", "datadam", "2"]
    assert float(newest[6]) > 0
    assert len(invoke(["runs", "--tracking-uri", uri, "--limit", "1"]).output.splitlines()) == 3

    compared = invoke(["compare", run_ids[0][:5], run_ids[1][:5], "--output-dir", str(tmp_path), "--tracking-uri", uri])
    assert compared.exit_code == 0, compared.output
    assert (tmp_path / "compare.png").is_file()
    short = invoke(["compare", run_ids[0][:3], run_ids[1], "--tracking-uri", uri])
    assert short.exit_code == 2 and "is too short: give at least 4 characters" in short.output
    missing = invoke(["compare", "ffff0000", run_ids[0], "--tracking-uri", uri])
    assert missing.exit_code == 2 and "error: no run 'ffff0000'" in missing.output
    unknown = invoke(["runs", "--tracking-uri", uri, "--experiment", "nope"])
    assert unknown.exit_code == 2 and "error: no MLflow experiment named 'nope'" in unknown.output


def test_an_ambiguous_prefix_names_its_matches():
    def run(run_id, name):
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id, run_name=name))

    client = SimpleNamespace(
        search_experiments=lambda: [SimpleNamespace(experiment_id="1")],
        search_runs=lambda ids, query, max_results: [run("abcd" + "0" * 28, "one"), run("abcd" + "1" * 28, "two")],
    )
    with pytest.raises(DDError, match=r"run id prefix 'abcd' is ambiguous in db: abcd0+ \(one\), abcd1+ \(two\)"):
        find_run(client, "abcd", "db")
    assert find_run(client, "not-an-id", "db") is None


@pytest.mark.parametrize(
    ("status", "tags", "shown"),
    [
        ("FINISHED", {"ddorch.stopped_early": "true", "ddorch.stopped_at_iteration": "100"}, "stopped early"),
        ("KILLED", {"ddorch.stopped": "below the rung"}, "stopped early"),  # stores from before the tag
        ("KILLED", {}, "killed"),
        ("FINISHED", {}, "finished"),
    ],
)
def test_runs_shows_trials_stopped_on_purpose_as_stopped_early(status, tags, shown):
    from orchestrator.store.runs import _status

    run = SimpleNamespace(info=SimpleNamespace(status=status), data=SimpleNamespace(tags=tags))
    assert _status(run) == shown


def test_what_the_readme_commands_write_stays_out_of_git_status(monkeypatch):
    """The default MLflow store, artefact folder and Ray storage are ignored by the repository's .gitignore."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(root)
    store = Path(resolve_tracking_uri(None).removeprefix("sqlite:///")).relative_to(root)

    def default(command, flag):
        return next(p.default for p in COMMANDS[command].params if flag in p.opts)

    written = [
        str(store),
        f"{default('run', '--output-dir')}/a/summary.json",
        f"{default('sweep', '--storage-path')}/a/b",
        default("server", "--backend-store-uri"),
        f"{default('server', '--artifacts-destination')}/1/a",
    ]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *written], cwd=root, capture_output=True, text=True)
    assert ignored.stdout.split() == written


def test_an_option_group_becomes_the_options_it_offers_and_reaches_the_command_as_one_object(tmp_path):
    from typing import Annotated

    from orchestrator.cli.options import Offer, Setup, as_command

    seen = {}

    def probe(
        name: str = typer.Option("x", "--name", help="A name."),
        setup: Annotated[Setup, Offer("data_root", "device")] = Setup(),
    ) -> None:
        seen.update(name=name, setup=setup)

    probe_app = typer.Typer()
    probe_app.command()(as_command(probe))
    result = runner.invoke(probe_app, ["--device", "cpu", "--data-root", str(tmp_path), "--name", "y"])
    assert result.exit_code == 0, result.output
    assert seen == {"name": "y", "setup": Setup(data_root=tmp_path, device="cpu")}  # the rest at their defaults
    shown = runner.invoke(probe_app, ["--help"], env={"COLUMNS": "200"}).output
    assert "Data, device and MLflow" in shown and "--device" in shown and "--tracking-uri" not in shown
