"""One flag name per concept across commands; the older spellings still parse, hidden from help.

`ddorch` hands `canonical` to Click as its token normaliser, so `--seeds 3` reaches the option
declared as `--eval-seeds`; reproduce commands written into MLflow use the current names too.
"""

from __future__ import annotations

OLD_SPELLINGS = {
    "seeds": "eval-seeds",  # networks trained per evaluated set (the analyses said --seeds)
    "models": "eval-models",  # networks trained on a set (cross-arch said --models, nas-proxy --pool)
    "pool": "eval-models",
    "out": "output-dir",  # where a command writes its files (compare and report said --out)
}


def canonical(name: str) -> str:
    """The current name of a flag (without its dashes)."""
    return OLD_SPELLINGS.get(name, name)
