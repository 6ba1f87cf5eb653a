"""Pictures people would rather look at than read: image grids and curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and Ray workers
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402

from ddcore.synthetic import SyntheticSet  # noqa: E402


def _upscale_small(images: torch.Tensor, min_size: int = 32) -> torch.Tensor:
    """Nearest-neighbour upscaling so 8x8 digits stay visible in a grid."""
    factor = max(1, -(-min_size // images.shape[-1]))
    return images.repeat_interleave(factor, dim=-1).repeat_interleave(factor, dim=-2) if factor > 1 else images


GRID_PADDING = 2
LABEL_FONT_SIZE = 12


def class_grid(synthetic: SyntheticSet) -> Image.Image:
    """The all-classes grid, a row per class, each row named on its left by the class of its first image
    (MLflow's image steps and the report show this one picture)."""
    pixels = _upscale_small(synthetic.denormalised())
    labels, order = torch.sort(synthetic.hard_labels(), stable=True)
    per_row = max(1, synthetic.ipc)
    grid = make_grid(pixels[order], nrow=per_row, padding=GRID_PADDING, pad_value=1.0)
    picture = Image.fromarray((grid.permute(1, 2, 0) * 255).round().byte().numpy())
    font = ImageFont.load_default(size=LABEL_FONT_SIZE)
    names = [synthetic.class_names[int(label)] for label in labels[::per_row]]
    margin = 2 * GRID_PADDING + max(int(font.getlength(name)) for name in names)
    labelled = Image.new("RGB", (picture.width + margin, picture.height), "white")
    labelled.paste(picture, (margin, 0))
    draw = ImageDraw.Draw(labelled)
    row_height = pixels.shape[-2] + GRID_PADDING
    for row, name in enumerate(names):
        middle = GRID_PADDING + row * row_height + row_height // 2
        draw.text((GRID_PADDING, middle), name, fill="black", font=font, anchor="lm")
    return labelled


def save_grids(synthetic: SyntheticSet, folder: str | Path) -> list[Path]:
    """One grid per class and one all-classes grid (a row per class, labelled), de-normalised to pixels."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pixels = _upscale_small(synthetic.denormalised())
    labels = synthetic.hard_labels()
    paths = [folder / "grid_all_classes.png"]
    class_grid(synthetic).save(paths[0])
    for c, name in enumerate(synthetic.class_names):
        members = pixels[labels == c]
        if len(members) == 0:
            continue
        path = folder / f"grid_class_{c}_{_safe(name)}.png"
        save_image(members, path, nrow=min(10, len(members)), padding=2, pad_value=1.0)
        paths.append(path)
    return paths


def save_side_by_side(sets: list[SyntheticSet], titles: list[str], path: str | Path) -> Path:
    """Several synthetic sets' all-class grids next to each other (e.g. real vs noise init)."""
    figure, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 5), squeeze=False)
    for axis, synthetic, title in zip(axes[0], sets, titles):
        axis.imshow(class_grid(synthetic))
        axis.set_title(title)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def save_curves(
    curves: dict[str, list[tuple[int, float]]], path: str | Path, xlabel: str, ylabel: str, log_y: bool = False
) -> Path:
    """Line plot of named (step, value) series, e.g. loss components over distillation iterations."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        if points:
            steps, values = zip(*points)
            axis.plot(steps, values, label=name)
    if log_y:
        axis.set_yscale("log")
    return _label_and_save(figure, axis, path, xlabel, ylabel)


def _label_and_save(figure, axis, path: str | Path, xlabel: str, ylabel: str) -> Path:
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def save_scatter(
    points: list[tuple[float, float, str]], path: str | Path, xlabel: str, ylabel: str, names: list[str] | None = None
) -> Path:
    """(x, y, group) points, one colour per group (e.g. finished vs stopped early), log x when wide;
    `names` (one per point) writes each point's name next to it."""
    figure, axis = plt.subplots(figsize=(6, 4))
    for group in sorted({g for _, _, g in points}):
        xs = [x for x, _, g in points if g == group]
        ys = [y for _, y, g in points if g == group]
        axis.scatter(xs, ys, label=group)
    for (x, y, _), name in zip(points, names or []):
        axis.annotate(name, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    positives = [x for x, _, _ in points if x > 0]
    if positives and len(positives) == len(points) and max(positives) / min(positives) > 20:
        axis.set_xscale("log")
    return _label_and_save(figure, axis, path, xlabel, ylabel)


def save_accuracy_vs_ipc(
    curves: dict[str, list[tuple[int, float, float, float]]],
    stopped: dict[str, list[tuple[int, float]]],
    target: float | None,
    threshold: float | None,
    train_images_per_class: float | None,
    path: str | Path,
) -> Path:
    """Accuracy (%) vs images per class (log x), one line per method with its confidence interval.

    `curves`: per method, (ipc, mean, interval low, interval high) points; `stopped`: per method,
    (ipc, accuracy when stopped early) points, drawn as crosses. The full-data `target` is a
    horizontal line (and the lossless `threshold` a dashed one when a tolerance lowers it); the
    top axis is the compression ratio, full training set size / synthetic set size. Either is left
    out when it is None (unknown).
    """
    figure, axis = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for method, colour in zip(dict.fromkeys([*curves, *stopped]), colours):  # a line with only stopped trials too
        points = sorted(curves.get(method, []))
        if points:
            ipcs, means, lows, highs = zip(*points)
            below = [m - lo for m, lo in zip(means, lows)]
            above = [hi - m for m, hi in zip(means, highs)]
            axis.errorbar(ipcs, means, yerr=[below, above], marker="o", capsize=3, color=colour, label=method)
        crosses = stopped.get(method, [])
        if crosses:
            axis.scatter(*zip(*crosses), marker="x", color=colour, label=f"{method} (stopped early)")
    if target is not None:
        axis.axhline(target, color="black", linewidth=1, label=f"full data {target:.2f} %")
    if target is not None and threshold is not None and threshold < target:
        axis.axhline(
            threshold, color="black", linestyle="--", linewidth=1, label=f"lossless threshold {threshold:.2f} %"
        )
    axis.set_xscale("log")
    evaluated = [p[0] for points in [*curves.values(), *stopped.values()] for p in points]
    ticks = _one_two_five(min(evaluated), max(evaluated)) if evaluated else []
    axis.set_xticks(ticks, [str(t) for t in ticks])
    axis.minorticks_off()
    if train_images_per_class:
        ratio = axis.secondary_xaxis("top")
        ratio.set_xticks(ticks, [f"{train_images_per_class / t:,.0f}x" for t in ticks], fontsize=8)
        ratio.minorticks_off()
        ratio.set_xlabel("compression ratio (full training set / synthetic set)")
    return _label_and_save(figure, axis, path, "images per class (IPC)", "test accuracy %")


def _one_two_five(low: int, high: int) -> list[int]:
    """Ticks 1, 2, 5, 10, 20, 50, ... from `low` to `high`, and `high` itself."""
    ticks, scale = [], 1
    while scale <= high:
        ticks += [step * scale for step in (1, 2, 5) if low <= step * scale < high]
        scale *= 10
    return ticks + [high]


def save_heatmap(
    values: list[list[float]],
    row_labels: list[str],
    column_labels: list[str],
    path: str | Path,
    title: str,
    annotations: list[list[str]] | None = None,
) -> Path:
    """A rows x columns matrix of values in [0, 1] (e.g. accuracies), each cell written on it."""
    figure, axis = plt.subplots(figsize=(1.6 * len(column_labels) + 2.5, 0.8 * len(row_labels) + 1.8))
    image = axis.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axis.set_xticks(range(len(column_labels)), column_labels, rotation=30, ha="right")
    axis.set_yticks(range(len(row_labels)), row_labels)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            text = annotations[i][j] if annotations else f"{value:.2f}"
            axis.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if value < 0.6 else "black")
    axis.set_xlabel("evaluated on")
    axis.set_ylabel("trained on")
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.03)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
