"""DataDAM speed benchmark: the time of one distillation iteration, and that it computes the formula.

The setting of the issue: 28x28 one-channel images (real MNIST when found), ConvNetD3 with
instance norm, IPC 10, 10 classes, 256 real images per class, DSA on. One iteration = a fresh
network, a real batch, DSA on both sides, the SAM + MMD loss, backward, the SGD step on the
synthetic images. Timed side by side (interleaved, medians) against a straightforward version of
the official loop written here (class-by-class augmentation, one forward of the whole real batch
with forward hooks cloning every ReLU output, class means after host copies); the target is >= 3x.

Correctness: on the same network and the same augmented batches, our batched loss is compared
with a plain per-class fp32 computation of the same formula (one forward per class, as written
in the paper). bf16 autocast is timed too, with its loss difference.

    DDORCH_DATA_ROOT=../shared/data python benchmarks/datadam_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddcore.augment import dsa  # noqa: E402
from ddcore.data import load_dataset  # noqa: E402
from ddcore.errors import DDError  # noqa: E402
from ddcore.methods.datadam import DataDAMConfig, datadam_loss, spatial_attention  # noqa: E402
from ddcore.models import get_model  # noqa: E402

IPC, BATCH_REAL, CLASSES = 10, 256, 10
STRATEGY = "color_crop_cutout_flip_scale_rotate"


def real_images() -> tuple[torch.Tensor, str]:
    try:
        data = load_dataset("mnist")
        return data.train_images, "real MNIST"
    except DDError:
        return torch.randn(60000, 1, 28, 28), "random tensors (MNIST not found under DDORCH_DATA_ROOT)"


def per_class_loss(net, real, synthetic, config: DataDAMConfig) -> torch.Tensor:
    """The paper's formula class by class, fp32, no batching across classes."""
    total = torch.zeros(())
    for c in range(CLASSES):
        real_maps, real_embedding = net.features(real[c * BATCH_REAL : (c + 1) * BATCH_REAL])
        syn_maps, syn_embedding = net.features(synthetic[c * IPC : (c + 1) * IPC])
        for b in range(len(real_maps) - 1):
            a_real = spatial_attention(real_maps[b], config.attention_power).mean(0)
            a_syn = spatial_attention(syn_maps[b], config.attention_power).mean(0)
            total = total + config.loss_scale * (a_real - a_syn).pow(2).sum()
        total = (
            total
            + config.loss_scale * config.mmd_weight * (real_embedding.mean(0) - syn_embedding.mean(0)).pow(2).sum()
        )
    return total


def _host_class_mean_distance(real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """As the official `error(..., "MSE_B")`: class means of host copies, squared distance summed."""
    real_means = real.cpu().reshape(CLASSES, -1, real[0].numel()).mean(dim=1)
    synthetic_means = synthetic.cpu().reshape(CLASSES, -1, synthetic[0].numel()).mean(dim=1)
    return (real_means - synthetic_means).pow(2).sum()


def hooked_loss(net, real, synthetic, config: DataDAMConfig) -> torch.Tensor:
    """The loss as the official loop computes it: one forward of the whole real batch and one of the
    synthetic batch, forward hooks cloning every ReLU output, attention of all but the last, class
    means after host copies (DataDistillation/DataDAM main_DataDAM.py; written anew here)."""
    maps: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: maps.append(out.clone()))
        for m in net.modules()
        if isinstance(m, torch.nn.ReLU)
    ]
    real_embedding = net.embed(real).detach()
    real_maps, maps[:] = maps[:], []
    synthetic_embedding = net.embed(synthetic)
    synthetic_maps = maps[:]
    for hook in hooks:
        hook.remove()
    loss = torch.zeros(())
    for r, s in zip(real_maps[:-1], synthetic_maps[:-1]):
        a_real = spatial_attention(r.detach(), config.attention_power)
        a_syn = spatial_attention(s, config.attention_power)
        loss = loss + config.loss_scale * _host_class_mean_distance(a_real, a_syn)
    return loss + config.loss_scale * config.mmd_weight * _host_class_mean_distance(real_embedding, synthetic_embedding)


def class_by_class_dsa(real, synthetic, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official augmentation: one DSA call per class (its own seed), real and synthetic alike."""
    reals, syns = [], []
    for c in range(CLASSES):
        seed = step * CLASSES + c
        reals.append(dsa(real[c * BATCH_REAL : (c + 1) * BATCH_REAL], STRATEGY, seed=seed))
        syns.append(dsa(synthetic[c * IPC : (c + 1) * IPC], STRATEGY, seed=seed))
    return torch.cat(reals), torch.cat(syns)


def straightforward_iteration(images, synthetic, optimizer, config, step, generator) -> torch.Tensor:
    """One iteration of the straightforward implementation of the official loop, for the ratio."""
    torch.manual_seed(step)
    net = get_model("ConvNetD3", 1, CLASSES, 28).train().requires_grad_(False)
    index = torch.randint(len(images), (CLASSES * BATCH_REAL,), generator=generator)
    real, augmented = class_by_class_dsa(images[index], synthetic, step)
    loss = hooked_loss(net, real, augmented, config)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def one_iteration(images, synthetic, optimizer, config, step, generator) -> torch.Tensor:
    torch.manual_seed(step)
    net = get_model("ConvNetD3", 1, CLASSES, 28).train().requires_grad_(False)
    index = torch.randint(len(images), (CLASSES * BATCH_REAL,), generator=generator)
    real = dsa(images[index], STRATEGY, seed=step)
    losses = datadam_loss(net, real, dsa(synthetic, STRATEGY, seed=step), CLASSES, config)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optimizer.step()
    return losses["loss"].detach()


def time_modes(images, modes: dict, repeats: int) -> dict[str, float]:
    """Median seconds per iteration of each (iteration function, bf16) mode, interleaved so that a
    change of load hits every mode alike."""
    states = {}
    for name, (iteration, bf16) in modes.items():
        synthetic = images[: CLASSES * IPC].clone().requires_grad_(True)
        optimizer = torch.optim.SGD([synthetic], lr=1.0, momentum=0.5)
        config = DataDAMConfig(ipc=IPC, batch_real=BATCH_REAL, bf16=bf16)
        states[name] = (iteration, synthetic, optimizer, config, torch.Generator().manual_seed(0))
        iteration(images, synthetic, optimizer, config, 0, states[name][-1])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in modes}
    for step in range(1, repeats + 1):
        for name, (iteration, *state, generator) in states.items():
            started = time.perf_counter()
            iteration(images, *state, step, generator)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="DataDAM iteration time on this machine")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    images, source = real_images()
    print(f"data: {source}; threads: {torch.get_num_threads()}; torch {torch.__version__}")

    torch.manual_seed(0)
    net = get_model("ConvNetD3", 1, CLASSES, 28).train().requires_grad_(False)
    real = dsa(images[: CLASSES * BATCH_REAL], STRATEGY, seed=1)
    synthetic = dsa(images[-CLASSES * IPC :], STRATEGY, seed=1)
    fp32 = DataDAMConfig(ipc=IPC, batch_real=BATCH_REAL)
    ours = datadam_loss(net, real, synthetic, CLASSES, fp32)["loss"].item()
    plain = per_class_loss(net, real, synthetic, fp32).item()
    ours_bf16 = datadam_loss(net, real, synthetic, CLASSES, DataDAMConfig(ipc=IPC, batch_real=BATCH_REAL, bf16=True))[
        "loss"
    ].item()
    print(
        f"loss: batched fp32 {ours:.6f}, per-class fp32 {plain:.6f}, relative difference {abs(ours - plain) / abs(plain):.2e}"
    )
    print(f"loss: batched bf16 {ours_bf16:.6f}, relative difference to fp32 {abs(ours_bf16 - plain) / abs(plain):.2e}")

    hooked = hooked_loss(net, real, synthetic, fp32).item()
    print(f"loss: official-style hooked loop {hooked:.6f}, relative difference {abs(ours - hooked) / abs(hooked):.2e}")

    load_start = os.getloadavg()[0]
    modes = {"straightforward": (straightforward_iteration, False), "fp32": (one_iteration, False)}
    modes["bf16"] = (one_iteration, True)
    seconds = time_modes(images, modes, args.repeats)
    base = seconds["straightforward"]
    for name, value in seconds.items():
        print(
            f"{name}: {value:.3f} s/iteration (median of {args.repeats}); {base / value:.2f}x the straightforward loop"
        )
    print(
        f"target: fp32 >= 3x the straightforward loop; load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    )


if __name__ == "__main__":
    main()
