"""A trial run again with its cache goes on from the work an earlier run kept: the distilled set and
the evaluation seeds it finished, with the numbers of an uninterrupted trial."""

from dataclasses import replace

import pytest
from mlflow.tracking import MlflowClient

from ddcore.errors import DDError
from ddcore.evaluate import EvalSpec
from ddcore.methods import get_method
from orchestrator.engine.resolve import Layers, resolve_trial
from orchestrator.engine.trial import TrialConfig, distillation_key, run_trial
from orchestrator.store.run_schema import Tag
from orchestrator.store.tracking import Tracker
from orchestrator.store.trial_cache import TrialCache


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
