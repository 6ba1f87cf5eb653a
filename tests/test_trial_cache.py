"""A trial run again with its cache goes on from the work an earlier run kept: the distilled set and
the evaluation seeds it finished, with the numbers of an uninterrupted trial; or the set it kept
part-way, distilling on from there."""

from dataclasses import replace

import pytest
from mlflow.tracking import MlflowClient

from ddcore import hardware
from ddcore.errors import DDError
from ddcore.evaluate import EvalSpec
from ddcore.methods import get_method
from orchestrator.engine import trial_hooks
from orchestrator.engine.resolve import Layers, resolve_trial
from orchestrator.engine.trial import TrialConfig, distillation_key, run_trial
from orchestrator.store.run_schema import Tag
from orchestrator.store.tracking import Tracker
from orchestrator.store.trial_cache import Resume, TrialCache


def tiny_trial(seeds: int) -> TrialConfig:
    flags = Layers(flags=dict(iterations=3, batch_real=8, model="ConvNetD1", device="cpu"))
    evaluation = EvalSpec(("ConvNetD1",), seeds=seeds, epochs=3)
    return resolve_trial("datadam", "digits", "paper", 1, evaluation, flags, baseline=False)


def run(trial, uri, cache=None):
    return run_trial(trial, Tracker.start(uri, run_name="cached"), progress=False, cache=cache)


def test_a_trial_goes_on_from_its_cache_with_the_numbers_of_an_uninterrupted_one(workspace, monkeypatch):
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    whole = run(tiny_trial(2), uri)
    cache = TrialCache(workspace / "trial", distillation_key(tiny_trial(2)))
    first = run(tiny_trial(1), uri, cache)  # a part: the set and seed 0, then the budget ended
    assert cache.has_distilled() and not first.from_cache

    def no_distillation(*args, **kwargs):
        raise AssertionError("the cached set is read, not distilled again")

    monkeypatch.setattr(get_method("datadam"), "distill", no_distillation)
    resumed = run(tiny_trial(2), uri, cache)
    accuracies = [[r.accuracy for r in t.evaluations["ConvNetD1"].runs] for t in (whole, first, resumed)]
    assert accuracies[2] == accuracies[0] and accuracies[1] == accuracies[0][:1]
    assert resumed.from_cache and resumed.distill_seconds == first.distill_seconds
    assert (resumed.synthetic.images == whole.synthetic.images).all()
    tags = MlflowClient(uri).get_run(resumed.run_id).data.tags
    assert tags[Tag.FROM_CACHE] == str(workspace / "trial")


def test_a_cache_refuses_another_distillation_and_retrains_a_broken_seed(workspace):
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    trial = tiny_trial(1)
    cache = TrialCache(workspace / "trial", distillation_key(trial))
    first = run(trial, uri, cache)
    other = replace(trial, method_config=trial.method_config.with_overrides(iterations=4))
    assert distillation_key(other) != cache.key
    evaluated_otherwise = replace(trial, eval=replace(trial.eval, epochs=5, seeds=3))
    assert distillation_key(evaluated_otherwise) == cache.key  # evaluation is not in it
    with pytest.raises(DDError, match="holds another distillation"):
        run(other, uri, TrialCache(cache.folder, distillation_key(other)))
    (seed_file,) = cache.folder.glob("eval_*seed0.json")
    seed_file.write_text("{")
    with pytest.warns(UserWarning, match="ignoring the cached evaluation"):
        again = run(trial, uri, cache)
    assert again.evaluations["ConvNetD1"].runs[0].accuracy == first.evaluations["ConvNetD1"].runs[0].accuracy


def test_a_trial_killed_part_way_distils_on_from_the_set_its_cache_kept(workspace, monkeypatch):
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    monkeypatch.setattr(trial_hooks, "PROGRESS_EVERY_S", 0.0)  # a save at every window (10 iterations)
    trial = replace(tiny_trial(1), method_config=tiny_trial(1).method_config.with_overrides(iterations=40))
    cache = TrialCache(workspace / "trial", distillation_key(trial))
    save = trial_hooks.ProgressSaver.after_step

    def killed_after_20(hook, step):
        save(hook, step)
        if step.iteration == 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(trial_hooks.ProgressSaver, "after_step", killed_after_20)
    tracker = Tracker.start(uri, run_name="killed")
    with pytest.raises(KeyboardInterrupt):
        run_trial(trial, tracker, progress=False, cache=cache)
    kept = cache.progress()
    assert kept.iteration == 20 and kept.run_id == tracker.run_id and kept.distill_seconds > 0
    assert cache.progress_reached() == (20, kept.distill_seconds, hardware.machine())
    monkeypatch.setattr(trial_hooks.ProgressSaver, "after_step", save)

    starts = []
    distill = get_method("datadam").distill

    def recorded(data, config, start=None, start_iteration=0, **kwargs):
        starts.append((start_iteration, start.images.clone()))
        return distill(data, config, start=start, start_iteration=start_iteration, **kwargs)

    monkeypatch.setattr(get_method("datadam"), "distill", recorded)
    resumed = run(trial, uri, cache)
    assert starts[0][0] == 20 and (starts[0][1] == kept.synthetic.images).all()
    assert resumed.distill_seconds > kept.distill_seconds  # the whole distillation's, both runs
    client = MlflowClient(uri)
    assert client.get_run(resumed.run_id).data.tags[Tag.RESUMED_FROM] == f"{tracker.run_id} at iteration 20"
    assert [m.step for m in client.get_metric_history(resumed.run_id, "loss")] == [30, 40]
    assert cache.progress() is None and not list(cache.folder.glob("progress*"))


def test_kept_seconds_name_this_machine_only_when_all_of_them_ran_here(workspace):
    """The next run prices the rest of a kept distillation at its pace on the machine that kept it:
    seconds that began on another machine name none."""
    cache, here = TrialCache(workspace / "trial", "key"), hardware.machine()
    for earlier, named in (
        (None, here),
        (Resume(None, 10, 0.0, "ray checkpoint"), here),  # a checkpoint without its seconds
        (Resume(None, 10, 5.0, "run", here), here),
        (Resume(None, 10, 5.0, "run", "NVIDIA H200"), ""),
    ):
        assert trial_hooks.ProgressSaver(cache, None, 40, earlier, None).machine == named


def test_a_kept_set_is_replaced_whole(workspace):
    trial = tiny_trial(1)
    cache = TrialCache(workspace / "trial", distillation_key(trial))
    first = run(trial, f"sqlite:///{workspace / 'mlflow.db'}")
    for iteration in (1, 2):
        cache.save_progress(Resume(first.synthetic, iteration, 1.5 * iteration, "run"))
    assert [p.name for p in cache.folder.glob("progress_*.pt")] == ["progress_2.pt"]
    kept = cache.progress()
    assert (kept.iteration, kept.distill_seconds, kept.run_id) == (2, 3.0, "run")
    assert (kept.synthetic.images == first.synthetic.images).all()
