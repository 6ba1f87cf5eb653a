"""Acceptance benchmark of issue 7 on a finished distillation run (e.g. real MNIST, DataDAM, IPC 10):
the cross-architecture matrix over six networks, the continual-learning curve (distilled memory vs
random and herding exemplars) and the NAS-proxy rank correlation.

Each part runs exactly what its `ddorch` command runs (orchestrator.engine.analyses.analyse_run: a child
MLflow run of RUN_ID with its table, numbers and plots), then prints the table, the wall time and
the `ddorch` command that reproduces it, and appends a JSON line to --log.

    python benchmarks/distilled_applications.py RUN_ID --parts cross-arch,continual,nas-proxy --setting full
    python benchmarks/distilled_applications.py RUN_ID --setting reduced      # fits ~40 min on 2 CPU cores

Settings (every number is stated in each table's notes):
- full: the protocols as specified: 1000 epochs on the synthetic set / memories, 3 seeds for the
  matrix and the curve; NAS proxy 1 seed, real side 20 epochs on the whole training set.
- reduced: a CPU-sized version for 2 cores: 300 epochs, 1 seed, NAS real side 5 epochs on 500
  images per class; the same networks, tasks, memories and pool.
- tiny: a smoke test (digits-sized; a few epochs), to check the script before a long run.
Then `ddorch report RUN_ID --out report/` gathers them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddcore.analyses.continual import ContinualConfig  # noqa: E402
from ddcore.analyses.cross_arch import CrossArchConfig  # noqa: E402
from ddcore.analyses.nas_proxy import NasProxyConfig  # noqa: E402
from orchestrator.engine.analyses import analyse_run, command_line  # noqa: E402

SETTINGS = {
    "full": {
        "cross_arch": CrossArchConfig(seeds=3),
        "continual": ContinualConfig(seeds=3),
        "nas_proxy": NasProxyConfig(seeds=1),
    },
    "reduced": {
        "cross_arch": CrossArchConfig(seeds=1, epochs=300),
        "continual": ContinualConfig(seeds=1, epochs=300, herding_epochs=2),
        "nas_proxy": NasProxyConfig(seeds=1, proxy_epochs=300, full_epochs=5, full_per_class=500),
    },
    "tiny": {
        "cross_arch": CrossArchConfig(seeds=1, epochs=2),
        "continual": ContinualConfig(model="ConvNetD1", seeds=1, epochs=2, herding_epochs=1),
        "nas_proxy": NasProxyConfig(
            pool=("ConvNetD1", "ConvNetD1W32", "ConvNetD2NN"), proxy_epochs=2, full_epochs=1, full_per_class=20
        ),
    },
}
PARTS = {"cross-arch": "cross_arch", "continual": "continual", "nas-proxy": "nas_proxy"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--parts", default="cross-arch,continual,nas-proxy")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="reduced")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--output-dir", type=Path, default=Path("runs"))
    parser.add_argument(
        "--log", type=Path, default=Path(__file__).resolve().parent / "logs" / "distilled_applications.jsonl"
    )
    args = parser.parse_args()

    for part in args.parts.split(","):
        kind = PARTS[part.strip()]
        config = replace(SETTINGS[args.setting][kind], device=args.device)
        started = time.perf_counter()
        outcome = analyse_run(
            kind, args.run_id, config, args.tracking_uri, args.data_root, args.output_dir, progress=True
        )
        seconds = time.perf_counter() - started
        table = outcome.result.table()
        print(table.to_markdown())
        print(
            f"\n{part}: {seconds / 60:.1f} min wall ({args.setting} setting); MLflow run {outcome.run_id}; files in {outcome.folder}"
        )
        print(f"rerun: {command_line(kind, args.run_id, config)}\n", flush=True)
        args.log.parent.mkdir(parents=True, exist_ok=True)
        with args.log.open("a") as log:
            log.write(
                json.dumps(
                    {
                        "part": part,
                        "setting": args.setting,
                        "run_id": args.run_id,
                        "analysis_run": outcome.run_id,
                        "wall_seconds": seconds,
                        "table": table.rows,
                        "notes": table.notes,
                        "command": command_line(kind, args.run_id, config),
                    }
                )
                + "\n"
            )


if __name__ == "__main__":
    main()
