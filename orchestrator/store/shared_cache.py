"""ddcore's shared cache (`ddcore.shared_cache`) kept in the MLflow tracking server every node reaches.

An entry (a baseline seed's JSON, a difficulty-score file, an experts folder) is one run of the
`ddorch-cache` experiment named and tagged by its cache key, its files the run's artefacts under
`entry/`. The run is the claim too: created RUNNING by the caller that produces the entry, it ends
FINISHED once every file is uploaded (readers take only FINISHED runs: publishing is atomic), or
FAILED. Of several claims open at once, the earliest (start time, then run id) wins; the others are
deleted and wait for it. A claim's holder logs a `heartbeat` metric (the time) every
`HEARTBEAT_S`; a claim silent for `STALE_S` (its process died) is ended KILLED and claimed anew.
Versions are publication times (ms); the clocks of the nodes are assumed to agree within seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ddcore.shared_cache import sharing_with
from orchestrator.store.run_schema import Status, Tag, tag_filter
from orchestrator.store.tracking import ensure_experiment, is_local_store

CACHE_EXPERIMENT = "ddorch-cache"
ENTRY = "entry"
MANIFEST = "manifest.json"  # written last into a folder: readers check it (ddcore.methods.pad.experts)
HEARTBEAT_S = 20.0
STALE_S = 120.0
POLL_S = 2.0


def sharing(tracking_uri: str):
    """The block's caches shared through the tracking server at `tracking_uri`; a store on this machine's
    disk shares nothing more than the local cache folder already does."""
    return sharing_with(None if is_local_store(tracking_uri) else MlflowCacheStore(tracking_uri))


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class MlflowCacheStore:
    tracking_uri: str
    _experiment: str | None = field(default=None, repr=False)

    @property
    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri)

    @property
    def experiment_id(self) -> str:
        if self._experiment is None:
            self._experiment = ensure_experiment(self.client, CACHE_EXPERIMENT)
        return self._experiment

    def _runs(self, key: str, status: str, order: str) -> list:
        query = f"{tag_filter(Tag.CACHE_KEY, key)} and attributes.status = '{status}'"
        return self.client.search_runs([self.experiment_id], query, order_by=[order])

    def fetch(self, key: str, into: Path, newer_than: int | None = None) -> int | None:
        published = self._runs(key, Status.FINISHED, "attributes.end_time DESC")
        if not published or (newer_than is not None and published[0].info.end_time <= newer_than):
            return None
        run = published[0]
        into.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=into.parent, prefix=".fetch-") as folder:
            (downloaded,) = Path(self.client.download_artifacts(run.info.run_id, ENTRY, folder)).iterdir()
            _move_in(downloaded, into)
        return run.info.end_time

    def claim(self, key: str, seen: int | None) -> CacheClaim | None:
        client = self.client
        mine = client.create_run(self.experiment_id, run_name=key, tags={Tag.CACHE_KEY: key}).info.run_id
        newer = self._runs(key, Status.FINISHED, "attributes.end_time DESC")
        open_claims = self._runs(key, Status.RUNNING, "attributes.start_time ASC")
        first = min(open_claims, key=lambda r: (r.info.start_time, r.info.run_id))
        if first.info.run_id == mine and not (newer and (seen is None or newer[0].info.end_time > seen)):
            return CacheClaim(self.tracking_uri, mine)
        client.delete_run(mine)
        if first.info.run_id != mine:
            self._wait(first.info.run_id)
        return None

    def _wait(self, run_id: str) -> None:
        """Until the claim `run_id` ends; one silent for `STALE_S` is ended KILLED (its holder died)."""
        client = self.client
        while True:
            run = client.get_run(run_id)
            if run.info.status != Status.RUNNING:
                return
            beat = run.data.metrics.get("heartbeat", run.info.start_time / 1000)
            if time.time() - beat > STALE_S:
                client.set_tag(run_id, Tag.STALE_CLAIM, f"no heartbeat for {STALE_S:g} s")
                client.set_terminated(run_id, Status.KILLED)
                return
            time.sleep(POLL_S)


def _move_in(downloaded: Path, into: Path) -> None:
    """A downloaded file or folder into the cache, file by file with renames (a folder's manifest last)."""
    if downloaded.is_file():
        os.replace(downloaded, into)
        return
    into.mkdir(parents=True, exist_ok=True)
    for path in sorted(downloaded.iterdir(), key=lambda p: p.name == MANIFEST):
        os.replace(path, into / path.name)


class CacheClaim:
    """This caller's claim: its heartbeat runs until the entry is published or abandoned."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    @property
    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri)

    def _heartbeat(self) -> None:
        client = self.client
        while not self._stop.is_set():
            try:
                client.log_metric(self.run_id, "heartbeat", time.time())
            except Exception:  # a server briefly away: the next beat tries again
                pass
            self._stop.wait(HEARTBEAT_S)

    def _end(self, status: str) -> None:
        self._stop.set()
        self._beat.join()
        self.client.set_terminated(self.run_id, status, end_time=_now_ms())

    def publish(self, path: Path) -> None:
        """Upload the entry, then end the run FINISHED: the moment readers see it."""
        with tempfile.TemporaryDirectory() as folder:
            staged = Path(folder) / path.name  # the entry's own name under `entry/`, file or folder alike
            if path.is_dir():
                shutil.copytree(path, staged, ignore=shutil.ignore_patterns("*.partial"))
            else:
                shutil.copy2(path, staged)
            self.client.log_artifacts(self.run_id, folder, ENTRY)
        self._end(Status.FINISHED)

    def abandon(self, reason: str) -> None:
        self.client.set_tag(self.run_id, Tag.FAILURE, reason[:5000])
        self._end(Status.FAILED)
