"""A result table as text: what the CLI prints, what a run stores (`table.json`), what a report shows.

Analyses (cross-architecture, continual learning, NAS proxy) each turn their typed result into
one `ResultTable`, so the terminal, MLflow and `ddorch report` show the same numbers in the same
form without knowing each analysis's internals.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ResultTable:
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)  # one line each: settings, conventions, caveats

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ResultTable:
        return cls(**json.loads(Path(path).read_text()))

    def to_markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |", "|" + " --- |" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += [""] + [f"- {note}" for note in self.notes] if self.notes else []
        return "\n".join(lines)


def percent(mean: float, std: float) -> str:
    """Accuracy fractions as `97.12 ± 0.30` (percent)."""
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def plural(count: int, noun: str) -> str:
    """`1 set`, `3 sets`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def squared_points(variance: float | None) -> str:
    """A variance of accuracy fractions in percentage points squared (`0.203`); `-` when unknown."""
    return "-" if variance is None else f"{1e4 * variance:.3f}"
