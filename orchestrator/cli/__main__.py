"""`python -m orchestrator.cli`: the `ddorch` command where the entry point is not installed."""

from orchestrator.cli import main

main()
