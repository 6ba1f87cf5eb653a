"""What the processor a run lands on computes natively, read where the run is (a Ray worker reads its own).

bf16 autocast pays only where the hardware computes bf16. On x86 CPUs that is the AVX512-BF16
or AMX-BF16 instructions: oneDNN, which runs torch's CPU convolutions, has bf16 kernels for its
`avx512_core_bf16` and `avx512_core_amx` ISAs and otherwise converts through fp32 ("Support for
low precision data types may not be available" on every platform: oneDNN's Data Types guide,
https://oneapi-src.github.io/oneDNN/v2/dev_guide_data_types.html, Hardware Limitations). Measured
27x slower than fp32 on an AVX2-only CPU (`EMULATED_CPU_COST`). On NVIDIA GPUs bf16 tensor
cores start with compute capability 8.0 (Ampere): torch's own `torch.cuda.is_bf16_supported(
including_emulation=False)` draws the line at major version 8 and counts older GPUs as emulating it
(torch/cuda/__init__.py).

torch names its own CPU kernel level with `torch.backends.cpu.get_cpu_capability()` ("DEFAULT",
"VSX", "Z VECTOR", "NO AVX", "AVX2", "AVX512", "SVE256": its docstring,
https://pytorch.org/docs/stable/backends.html#torch.backends.cpu.get_cpu_capability); the bf16
and AMX flags come from the kernel's `/proc/cpuinfo` (Linux, where clusters run; elsewhere no
flags are read and bf16 counts as not native: `--force-bf16` runs it anyway).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from ddcore.errors import DDError

# CPU flags (as /proc/cpuinfo spells them) that give native bf16 arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CUDA_BF16_CAPABILITY = (8, 0)
# benchmarks/RESULTS.md ("bf16 needs hardware that computes it"): benchmarks/datadam_speed.py, MNIST, IPC 10,
# 256 real images per class, DSA, alone on a 2-core AMD EPYC host with AVX2 only.
EMULATED_CPU_COST = (
    "measured 27x slower than fp32 (one DataDAM iteration 124.7 s vs 4.53 s on a 2-core AVX2-only AMD EPYC, "
    "benchmarks/RESULTS.md)"
)
EMULATED_GPU_COST = "slower than fp32 or no faster (not measured by ddorch)"
FORCE_FLAG = "--force-bf16"


@dataclass(frozen=True)
class CpuReport:
    """A CPU as torch and the kernel describe it."""

    name: str  # "AMD EPYC", from /proc/cpuinfo's model name
    capability: str  # torch.backends.cpu.get_cpu_capability(): the level of torch's own vector kernels
    flags: frozenset[str]  # /proc/cpuinfo's flags (empty where there is no such file)

    def isa(self) -> str:
        """`AVX2`, `AVX512 + AVX512-BF16`, `AVX512 + AMX`: torch's level and the bf16 extensions."""
        extras = [label for flag, label in (("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX")) if flag in self.flags]
        return " + ".join([self.capability, *extras])


@dataclass(frozen=True)
class GpuReport:
    index: int
    name: str
    memory_gib: float
    capability: tuple[int, int]  # CUDA compute capability (major, minor)


@dataclass(frozen=True)
class Bf16Support:
    """Whether bf16 is native on one processor; when not, what it lacks and what emulation costs."""

    native: bool
    processor: str  # "AMD EPYC (AVX2)", "Tesla T4 (compute capability 7.5)"
    lacks: str = ""  # what native bf16 needs that the processor has not; "" when native
    cost: str = ""  # what bf16 costs there when emulated

    def refusal(self, asked: str) -> str:
        """The one line that refuses `asked` (e.g. "bf16 evaluation") here."""
        return (
            f"{asked} asked for on {self.processor}, which lacks {self.lacks}: bf16 is emulated there, {self.cost}; "
            f"run it in fp32, or add {FORCE_FLAG} to run it anyway"
        )

    def forced(self, asked: str) -> str:
        """What a forced run records: what it ran in bf16, where, and what the processor lacks."""
        return f"{asked} forced on {self.processor}, which lacks {self.lacks}"


def cpu_bf16(cpu: CpuReport) -> Bf16Support:
    native = any(flag in cpu.flags for flag in BF16_CPU_FLAGS)
    processor = f"{cpu.name} ({cpu.isa()})"
    if native:
        return Bf16Support(True, processor)
    return Bf16Support(False, processor, "AVX512-BF16 and AMX", EMULATED_CPU_COST)


def gpu_bf16(gpu: GpuReport) -> Bf16Support:
    processor = f"{gpu.name} (compute capability {gpu.capability[0]}.{gpu.capability[1]})"
    if gpu.capability >= CUDA_BF16_CAPABILITY:
        return Bf16Support(True, processor)
    return Bf16Support(False, processor, "bf16 tensor cores (compute capability 8.0 or later)", EMULATED_GPU_COST)


def _cpuinfo_fields() -> dict[str, str]:
    """The first processor's `key: value` lines of /proc/cpuinfo ({} where there is none)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return {}
    fields: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            break  # the end of the first processor's block
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


@functools.cache
def cpu_report() -> CpuReport:
    """This machine's CPU (read once per process)."""
    fields = _cpuinfo_fields()
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = frozenset((fields.get("flags") or fields.get("Features") or "").split())
    return CpuReport(name, torch.backends.cpu.get_cpu_capability(), flags)


def machine() -> str:
    """This machine in a few words, as results and kept work name it: the GPU's name, else the CPU's
    and its cores (speeds measured on one machine price work only there)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{cpu_report().name}, {os.cpu_count()} cores"


def gpu_report(index: int) -> GpuReport:
    props = torch.cuda.get_device_properties(index)
    return GpuReport(index, props.name, props.total_memory / 2**30, (props.major, props.minor))


def gpu_reports() -> list[GpuReport]:
    """The visible CUDA GPUs ([] without CUDA)."""
    if not torch.cuda.is_available():
        return []
    return [gpu_report(index) for index in range(torch.cuda.device_count())]


def bf16_support(device: torch.device) -> Bf16Support:
    """Whether bf16 is native on `device`, read on the machine this runs on."""
    if device.type == "cuda":
        return gpu_bf16(gpu_report(device.index if device.index is not None else torch.cuda.current_device()))
    return cpu_bf16(cpu_report())


def require_native_bf16(asked: str, device: torch.device, force: bool) -> str | None:
    """Refuse `asked` (what would run in bf16) in one line where bf16 is not native on `device`,
    unless `force`; then the note a forced run records. None where bf16 is native."""
    support = bf16_support(device)
    if support.native:
        return None
    if not force:
        raise DDError(support.refusal(asked))
    return support.forced(asked)
