"""Experiment presets and search spaces: parsing, validation, one-line errors."""

import pytest
from typer.testing import CliRunner

from ddcore.errors import DDError
from orchestrator.cli import app
from orchestrator.engine.experiments import list_experiments, load_experiment, load_space, parse_overrides


def test_presets_load_and_their_spaces_validate():
    assert {"digits_datadam", "mnist_datadam", "mhist_datadam"} <= set(list_experiments())
    for name in list_experiments():
        preset = load_experiment(name)
        space = load_space(preset.space, preset.method)
        assert space.distributions and preset.num_samples >= 1


def test_preset_eval_protocol_is_checked(monkeypatch, tmp_path):
    import orchestrator.engine.experiments as experiments

    assert load_experiment("digits_datadam").eval.protocol is None  # the data set's (DatasetSpec): dc
    (tmp_path / "odd.toml").write_text(
        'dataset = "digits"\nmethod = "datadam"\nspace = "datadam.toml"\neval_protocol = "weekly"\n'
    )
    (tmp_path / "experiments").mkdir()
    (tmp_path / "odd.toml").rename(tmp_path / "experiments" / "odd.toml")
    monkeypatch.setenv(experiments.PRESETS_ENV, str(tmp_path))
    with pytest.raises(DDError, match="unknown evaluation protocol 'weekly'"):
        load_experiment("odd")


def test_sweep_build_trial_carries_the_protocol():
    from dataclasses import replace

    from orchestrator.engine.sweep import SweepContext, build_trial

    preset = load_experiment("digits_datadam")
    preset = replace(preset, eval=replace(preset.eval, protocol="datadam"))
    trial = build_trial(preset, {}, SweepContext("sqlite:///x.db", "ddorch", "parent", "/tmp", None))
    assert trial.eval.protocol == "datadam" and trial.protocol().name == f"datadam-{preset.eval.epochs}ep"


def test_space_maps_onto_ray_tune():
    from ray.tune.search.sample import Categorical, Float

    space = load_space("datadam_quick.toml", "datadam").to_tune()
    assert isinstance(space["mmd_weight"], Float) and isinstance(space["ipc"], Categorical)


def test_unknown_experiment_lists_known():
    with pytest.raises(DDError, match="unknown experiment 'nope'; known experiments: .*digits_datadam"):
        load_experiment("nope")


def test_space_with_unknown_parameter(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[learning_speed]\ntype = "uniform"\nlow = 0.1\nhigh = 1.0\n')
    with pytest.raises(DDError, match="unknown parameter\\(s\\) learning_speed for datadam"):
        load_space(path, "datadam")


@pytest.mark.parametrize(
    "body, message",
    [
        ('[lr_images]\ntype = "loguniform"\nlow = 1.0\nhigh = 1.0\n', "empty range"),
        ('[ipc]\ntype = "choice"\nvalues = []\n', "empty values list"),
        ('[lr_images]\ntype = "gaussian"\n', "needs type = one of"),
        ('[lr_images]\ntype = "loguniform"\nlow = 0.0\nhigh = 1.0\n', "loguniform needs low > 0"),
    ],
)
def test_bad_space_entries(tmp_path, body, message):
    path = tmp_path / "space.toml"
    path.write_text(body)
    with pytest.raises(DDError, match=message):
        load_space(path, "datadam")


def test_set_overrides_are_typed_and_checked():
    assert parse_overrides(["ipc=10", "lr_images=0.5", "init=noise"], "datadam") == {
        "ipc": 10,
        "lr_images": 0.5,
        "init": "noise",
    }
    with pytest.raises(DDError, match="unknown parameter"):
        parse_overrides(["speed=3"], "datadam")
    with pytest.raises(DDError, match="expects name=value"):
        parse_overrides(["ipc"], "datadam")


def test_cli_lists_and_shows_experiments():
    runner = CliRunner()
    listed = runner.invoke(app, ["experiments"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "digits_datadam" in listed.output
    shown = runner.invoke(app, ["show", "digits_datadam"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and '"mmd_weight"' in shown.output and '"grace_period"' in shown.output
    unknown = runner.invoke(app, ["sweep", "nope"], env={"COLUMNS": "200"})
    assert unknown.exit_code == 2 and "unknown experiment 'nope'" in unknown.output
    bad_protocol = runner.invoke(app, ["sweep", "digits_datadam", "--eval-protocol", "weekly"], env={"COLUMNS": "200"})
    assert bad_protocol.exit_code == 2 and "error: unknown evaluation protocol 'weekly'" in bad_protocol.output


def test_a_sampled_ipc_and_the_methods_default_preset_reach_the_trial():
    """`resolve_trial`: no preset means the method's first; sampled values (ipc too) override it."""
    from dataclasses import replace

    from orchestrator.engine.sweep import SweepContext, build_trial

    preset = replace(load_experiment("digits_datadam"), preset=None)
    context = SweepContext("sqlite:///x.db", "ddorch", "parent", "/tmp", None, device="cpu")
    trial = build_trial(preset, {"ipc": 3, "lr_images": 0.5}, context)
    config = trial.method_config
    assert trial.preset == "paper" and (config.ipc, config.lr_images, config.iterations) == (3, 0.5, 300)
    assert config.device == "cpu"
