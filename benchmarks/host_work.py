"""Per-iteration host work of the DataDAM loop, and whether it grows with the network (issue 14).

Without a GPU the 300 iterations/s goal cannot be measured; what can be shown on the CPU is that
nothing the host does per iteration scales with the model: no module is built, no host RNG draw
is made per class, and the only per-layer work is the in-place redraw of the weights, which runs
as tensor ops on the weights' device (one `uniform_`/`fill_` per parameter, no host copy).

For each network the loop runs `--short` and `--long` iterations under `torch.profiler`; the
difference divided by the extra iterations is the per-iteration count (set-up cancels out).
Counted per iteration: `nn.Module.__init__` calls (network builds), integer RNG ops
(`aten::randperm`, `aten::randint`: on a CPU run these include the DSA parameter draws, which on a
GPU run on its generator; the old per-class `randperm` index draws were 10 of them), random-init
kernels (`aten::uniform_`, `aten::normal_`: the in-place redraw, one per weight and bias), and all
aten ops. Counts, not timings: the result does not depend on the machine's load.

    DDORCH_DATA_ROOT=../shared/data python benchmarks/host_work.py
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from ddcore.data import load_dataset  # noqa: E402
from ddcore.methods import get_method  # noqa: E402
from ddcore.models import get_model  # noqa: E402

HOST_RNG = ("aten::randperm", "aten::randint")
INIT_RNG = ("aten::uniform_", "aten::normal_")


def counts(data, model: str, iterations: int, batch_real: int) -> Counter:
    """Op counts (and module builds) of a DataDAM run of `iterations` iterations with `model`."""
    method = get_method("datadam")
    config = method.config("paper", data.name, 10).with_overrides(
        iterations=iterations, model=model, batch_real=batch_real, device="cpu"
    )
    builds = Counter()
    original = torch.nn.Module.__init__

    def counting_init(self, *args, **kwargs):
        builds["module builds"] += 1
        original(self, *args, **kwargs)

    with (
        mock.patch.object(torch.nn.Module, "__init__", counting_init),
        profile(activities=[ProfilerActivity.CPU]) as prof,
    ):
        method.distill(data, config)
    ops = Counter({event.key: event.count for event in prof.key_averages()})
    return Counter(
        {
            "module builds": builds["module builds"],
            "randperm/randint ops": sum(ops[k] for k in HOST_RNG),
            "init RNG ops (uniform_, normal_)": sum(ops[k] for k in INIT_RNG),
            "aten ops in all": sum(ops.values()),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="ConvNetD2,ConvNetD3,ConvNetD4", help="networks to compare")
    parser.add_argument("--short", type=int, default=2, help="iterations of the first run")
    parser.add_argument("--long", type=int, default=5, help="iterations of the second run")
    parser.add_argument("--batch-real", type=int, default=8, help="real images per class (small: counts only)")
    args = parser.parse_args()
    data = load_dataset("mnist")
    extra = args.long - args.short
    rows = []
    for model in args.models.split(","):
        short = counts(data, model, args.short, args.batch_real)
        long = counts(data, model, args.long, args.batch_real)
        params = len(list(get_model(model, data.channels, data.num_classes, data.image_size).parameters()))
        rows.append((model, params, {k: (long[k] - short[k]) / extra for k in long}))
    keys = list(rows[0][2])
    print(f"Per DataDAM iteration (MNIST, IPC 10, real batch {args.batch_real}; runs of {args.short} and {args.long})")
    print("| network | parameter tensors | " + " | ".join(keys) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in keys) + " |")
    for model, params, per in rows:
        print(f"| {model} | {params} | " + " | ".join(f"{per[k]:g}" for k in keys) + " |")
    print(f"rerun: DDORCH_DATA_ROOT=../shared/data python benchmarks/host_work.py --models {args.models}")


if __name__ == "__main__":
    main()
