"""The cache shared through the tracking store (ddcore.shared_cache, orchestrator.store.shared_cache): an entry
made on one machine is fetched on another, publishing is atomic, two callers missing one key train it once,
a claim whose holder died is taken over. On a SQLite store: the protocol is the same as through a server."""

import threading
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from ddcore.baseline import caching_in, full_data_baseline
from ddcore.data import load_dataset
from ddcore.evaluate import get_protocol
from ddcore.shared_cache import shared_entry, sharing_with
from orchestrator.store import shared_cache
from orchestrator.store.run_schema import Status, Tag
from orchestrator.store.shared_cache import CACHE_EXPERIMENT, MlflowCacheStore, sharing


@pytest.fixture
def store(workspace):
    return MlflowCacheStore(f"sqlite:///{workspace / 'mlflow.db'}")


def entries(store, key):
    return store.client.search_runs([store.experiment_id], f"tags.`{Tag.CACHE_KEY}` = '{key}'")


def test_a_baseline_made_on_one_machine_is_read_on_another(store, workspace):
    data, protocol = load_dataset("digits", image_size=8), get_protocol("full", None, 1)
    with sharing_with(store):
        with caching_in(workspace / "node-a"):
            made, from_cache = full_data_baseline(data, "MLP", (0,), protocol, device="cpu")
        assert from_cache == [False]
        with caching_in(workspace / "node-b"):  # an empty cache folder: another machine's
            read, from_cache = full_data_baseline(data, "MLP", (0,), protocol, device="cpu")
    assert from_cache == [True] and read.runs == made.runs
    assert list((workspace / "node-b" / "baselines").iterdir())
    (entry,) = entries(
        store, next((workspace / "node-a").glob("baselines/*")).relative_to(workspace / "node-a").as_posix()
    )
    assert entry.info.status == Status.FINISHED


def test_a_folder_entry_lands_whole_with_its_manifest_last(store, workspace, monkeypatch):
    moved = []
    real_replace = shared_cache.os.replace
    monkeypatch.setattr(shared_cache.os, "replace", lambda a, b: (moved.append(b.name), real_replace(a, b)))
    with sharing_with(store), caching_in(workspace / "node-a"):
        folder = workspace / "node-a" / "experts" / "key1"
        with shared_entry(folder, lambda: (folder / "manifest.json").exists()) as produce:
            assert produce
            folder.mkdir(parents=True)
            for name in ("expert_000.pt", "manifest.json", "expert_001.pt"):
                (folder / name).write_text(name)
    with sharing_with(store), caching_in(workspace / "node-b"):
        folder = workspace / "node-b" / "experts" / "key1"
        with shared_entry(folder, lambda: (folder / "manifest.json").exists()) as produce:
            assert not produce
    assert sorted(p.name for p in folder.iterdir()) == ["expert_000.pt", "expert_001.pt", "manifest.json"]
    assert moved[-1] == "manifest.json" and len(moved) == 3


def test_two_callers_missing_one_key_produce_it_once(store, workspace):
    barrier, outcomes = threading.Barrier(2), {}

    def caller(name):
        barrier.wait()
        claim = store.claim("difficulty/k.pt", None)
        outcomes[name] = claim
        if claim is not None:
            time.sleep(1.5)  # training: the other waits
            source = workspace / name / "k.pt"
            source.parent.mkdir()
            torch.save({"made_by": name}, source)
            claim.publish(source)

    threads = [threading.Thread(target=caller, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [name for name, claim in outcomes.items() if claim is not None]
    assert len(outcomes) == 2 and len(winners) == 1
    assert store.fetch("difficulty/k.pt", workspace / "read.pt") is not None  # the loser reads it now
    assert torch.load(workspace / "read.pt")["made_by"] == winners[0]
    (entry,) = entries(store, "difficulty/k.pt")  # the loser's claim is gone, not left RUNNING
    assert entry.info.status == Status.FINISHED


def test_a_claim_whose_holder_went_silent_is_taken_over(store, monkeypatch):
    monkeypatch.setattr(shared_cache, "STALE_S", 0.5)
    client = MlflowClient(store.tracking_uri)
    dead = client.create_run(store.experiment_id, tags={Tag.CACHE_KEY: "baselines/x.json"}).info.run_id
    time.sleep(1)
    assert store.claim("baselines/x.json", None) is None  # waited on the dead claim, ended it
    assert client.get_run(dead).info.status == Status.KILLED
    assert Tag.STALE_CLAIM in client.get_run(dead).data.tags
    claim = store.claim("baselines/x.json", None)
    assert claim is not None
    claim.abandon("test over")


def test_a_failed_producer_publishes_nothing(store, workspace):
    with sharing_with(store), caching_in(workspace), pytest.raises(RuntimeError):
        with shared_entry(workspace / "baselines" / "y.json", lambda: False):
            raise RuntimeError("killed mid-training")
    (entry,) = entries(store, "baselines/y.json")
    assert entry.info.status == Status.FAILED and "killed mid-training" in entry.data.tags[Tag.FAILURE]
    assert store.fetch("baselines/y.json", workspace / "y.json") is None


def test_a_store_on_this_machine_shares_nothing_more_than_the_cache_folder(workspace):
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    with sharing(uri), caching_in(workspace):
        with shared_entry(workspace / "baselines" / "z.json", lambda: False) as produce:
            assert produce
    assert MlflowClient(uri).get_experiment_by_name(CACHE_EXPERIMENT) is None
