"""The bundle one GPU call carries (`.gpubundle/`, ignored by git, named in the call's `carry`).

The GPU machine's image has torch, numpy, pandas, matplotlib, typer, rich, pillow, scikit-learn,
tqdm, pyyaml, tabulate and portalocker, but no fvcore (FLOP counts), mlflow or ray, and nothing can
be installed there from a registry. The suite's rows run in process without Ray and write their runs
to folders (no MLflow: its wheels and their needs come to about 35 MB), so the bundle holds:

- `wheels/`: fvcore and what it needs beyond the image (iopath, yacs, termcolor), all pure Python;
  fvcore and iopath publish only source archives, built into wheels here;
- `data/MNIST/raw/`: MNIST's four IDX `.gz` files (11 MB), read as they are;
- `data/mhist/`: MHIST's annotations.csv and `images.zip`. The release's PNGs are already 128 px and
  take 109 MB (70 MB even as lossless WebP), over one call's 64 MiB, so they travel as lossy WebP at
  quality 95 (about 27 MB; a mean absolute error of about 1.9 of 255 per channel value on a sample),
  under their release names: the MHIST loader opens them as it opens the PNGs, and every row on them
  records `data_variant` "webp95" so they are never mixed with rows on the release's files;
- `commit`: the commit the copy was made from (the device's copy has no .git).

It prints the size of everything a call carries (the tracked and untracked-not-ignored files plus
the bundle) and refuses a bundle that would take it over the limit.

    python benchmarks/gpu_bundle.py                     # DDORCH_DATA_ROOT or ../shared/data
    python benchmarks/gpu_bundle.py --smoke --out DIR   # wheels only, for the CPU smoke
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MIB = 64.0  # one call's working tree and carried paths, together
# fvcore and what it needs that the GPU image lacks; versions as the project's CI installs them
WHEELS = {"fvcore": "0.1.5.post20221221", "iopath": "0.1.10", "yacs": "0.1.8", "termcolor": "3.3.0"}
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
WEBP_QUALITY = 95


def build_wheels(folder: Path) -> None:
    """Pure-Python wheels of WHEELS in `folder` (kept when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, version in WHEELS.items():
        if any(folder.glob(f"{name}-{version}-*.whl")):
            continue
        pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), f"{name}=={version}"]
        done = subprocess.run(pip, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"error: cannot build the {name} {version} wheel: {done.stderr.strip().splitlines()[-1]}")


def copy_mnist(data_root: Path, folder: Path) -> None:
    source = data_root / "MNIST" / "raw"
    missing = [f for f in MNIST_FILES if not (source / f"{f}.gz").is_file()]
    if missing:
        raise SystemExit(f"error: MNIST's {', '.join(f + '.gz' for f in missing)} not found in {source}")
    folder.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        shutil.copy2(source / f"{name}.gz", folder / f"{name}.gz")


def pack_mhist(data_root: Path, folder: Path) -> None:
    """annotations.csv as it is, every listed image as WebP q95 under its own name in images.zip."""
    from PIL import Image

    source = data_root / "mhist"
    if not (source / "annotations.csv").is_file():
        raise SystemExit(f"error: MHIST's annotations.csv not found in {source}")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "annotations.csv", folder / "annotations.csv")
    with open(source / "annotations.csv", newline="", encoding="utf-8-sig") as handle:
        names = [row["Image Name"] for row in csv.DictReader(handle)]
    with zipfile.ZipFile(folder / "images.zip.part", "w", zipfile.ZIP_STORED) as archive:  # WebP is compressed
        for name in names:
            with Image.open(source / "images" / name) as image:
                encoded = io.BytesIO()
                image.convert("RGB").save(encoded, "WEBP", quality=WEBP_QUALITY, method=4)
            archive.writestr(f"images/{name}", encoded.getvalue())
    (folder / "images.zip.part").rename(folder / "images.zip")


def carried_bytes(bundle: Path) -> tuple[int, int]:
    """(bytes of the files that travel anyway: tracked and untracked-not-ignored; bytes of the bundle)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.split("\0")
    tree = sum((ROOT / name).stat().st_size for name in listed if name and (ROOT / name).is_file())
    bundle_size = sum(path.stat().st_size for path in bundle.rglob("*") if path.is_file())
    return tree, bundle_size


def commit() -> str:
    found = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return found or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".gpubundle")
    parser.add_argument("--data-root", type=Path, default=None, help="default: DDORCH_DATA_ROOT, else ../shared/data")
    parser.add_argument("--smoke", action="store_true", help="wheels only (the CPU smoke reads digits)")
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    args = parser.parse_args(argv)
    data_root = args.data_root or Path(os.environ.get("DDORCH_DATA_ROOT", ROOT.parent / "shared" / "data"))
    build_wheels(args.out / "wheels")
    if not args.smoke:
        if not (args.out / "data" / "MNIST" / "raw" / f"{MNIST_FILES[0]}.gz").exists():
            copy_mnist(data_root, args.out / "data" / "MNIST" / "raw")
        if not (args.out / "data" / "mhist" / "images.zip").exists():
            print("packing MHIST (WebP q95, some seconds)...", flush=True)
            pack_mhist(data_root, args.out / "data" / "mhist")
    (args.out / "commit").write_text(commit() + "\n")
    tree, bundle = carried_bytes(args.out)
    parts = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in args.out.iterdir()}
    mib = (tree + bundle) / 2**20
    detail = ", ".join(f"{name} {size / 2**20:.1f}" for name, size in sorted(parts.items()))
    print(f"bundle {args.out}: {bundle / 2**20:.1f} MiB ({detail}); with the working tree {tree / 2**20:.1f} MiB")
    if mib > args.limit_mib:
        raise SystemExit(f"error: a call would carry {mib:.1f} MiB, over its {args.limit_mib:g} MiB")
    print(f"a call carries {mib:.1f} MiB of {args.limit_mib:g}: fits")


if __name__ == "__main__":
    main()
