"""The cache every node of a cluster shares: what outlives a trial (full-data baselines, PAD's experts,
difficulty scores) kept in one store, with each machine's cache folder (`cache_dir`) in front of it.

ddcore defines the rule and the interface; the orchestrator provides the store (MLflow's tracking
server: `orchestrator.store.shared_cache`) and switches it on around work with `sharing_with`. An
entry is a file or a folder under the cache folder, named by its path there (today's cache keys):

- a local hit is used as it is; on a miss the newest published copy is fetched into the folder;
- still missing (or not enough, e.g. fewer experts than asked for): the caller claims the entry in
  the store, produces it, and publishes it (readers see it only once complete); a caller that finds
  another's claim waits for it to end, then reads what it published (or claims again if it failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol


class Claim(Protocol):
    """The right to produce one entry, held in the store until published or abandoned."""

    def publish(self, path: Path) -> None: ...
    def abandon(self, reason: str) -> None: ...


class SharedStore(Protocol):
    def fetch(self, key: str, into: Path, newer_than: int | None = None) -> int | None:
        """Copy the newest published `key` into `into` (its files replaced one by one, a manifest last);
        its version (publication time, ms), or None when none newer than `newer_than` is published."""
        ...

    def claim(self, key: str, seen: int | None) -> Claim | None:
        """A claim on `key`; None when another caller held one (waited for until it ended) or published a
        version newer than `seen` (None: any): then fetch again."""
        ...


_STORES: list[SharedStore] = []


@contextmanager
def sharing_with(store: SharedStore | None) -> Iterator[None]:
    """Caches read through and publish to `store` inside the block (None: this machine's folder only)."""
    if store is None:
        yield
        return
    _STORES.append(store)
    try:
        yield
    finally:
        _STORES.pop()


@contextmanager
def shared_entry(path: Path, ready: Callable[[], bool], refresh: bool = False) -> Iterator[bool]:
    """Whether the caller must produce `path` (True: write it inside the block, it is published on leaving
    it) or may read it (False: here already, or fetched). `ready()` says whether `path` holds what the
    caller needs; `refresh` produces it again whatever is cached."""
    store = _STORES[-1] if _STORES else None
    if store is None or (not refresh and ready()):
        yield refresh or not ready()
        return
    from ddcore.baseline import cache_dir  # here: the baseline's cache reads through this module

    key = path.relative_to(cache_dir()).as_posix()
    floor = int(time.time() * 1000) if refresh else None  # refresh: only what is published from now on counts
    claim = None
    while claim is None:
        seen = store.fetch(key, path, floor)
        if seen is not None and ready():
            yield False
            return
        claim = store.claim(key, seen if seen is not None else floor)
    try:
        yield True
    except BaseException as error:
        claim.abandon(f"{type(error).__name__}: {error}")
        raise
    claim.publish(path)
