"""No host synchronisation inside a distillation iteration: what the GPU waits for is counted on the CPU.

On CUDA every read of a device tensor by the host (`.item()`, `int()`/`float()`/`bool()`, `.tolist()`,
`.cpu()`, `.numpy()`) and every op whose output size depends on values (`nonzero`, masked selection,
`unique`) makes the host wait for the GPU. Run on the CPU, the same code makes the same calls, so
they can be counted without a GPU: ops through a `TorchDispatchMode`, the Python-level reads by
wrapping them. The only reads an iteration may make are draws from host generators, which stay on
the host on a GPU too (`DataDAMRun.step`'s augmentation seed, `augment._Draws.choice`); the loop's
loss window reads the losses once per `log_every`, and the finished set is copied to the host once.
"""

from __future__ import annotations

import linecache
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ddcore.data import load_dataset
from ddcore.methods import get_method
from ddcore.methods.loop import run_loop

SYNCING_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "_unique", "unique_dim", "unique_consecutive")
HOST_READS = ("tolist", "cpu", "numpy")
# Reads of host-generator draws: on a GPU these tensors live on the host, so reading them waits for nothing.
HOST_DRAWS = ("generator=self.generator))", "generator=host))")


def _caller() -> str:
    """The first ddcore line on the stack (where the read was asked for), as 'file:line: source'."""
    for frame in reversed(traceback.extract_stack()):
        if "/ddcore/" in frame.filename:
            return f"{frame.filename.split('/ddcore/')[1]}:{frame.lineno}: {linecache.getline(frame.filename, frame.lineno).strip()}"
    return "outside ddcore"


class SyncCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[tuple[str, str]] = []  # (phase, caller)
        self.phase = "setup"

    def record(self, what: str) -> None:
        caller = _caller()
        if not any(draw in caller for draw in HOST_DRAWS):
            self.syncs.append((self.phase, f"{what} at {caller}"))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in SYNCING_OPS:
            self.record(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.fixture
def counter(monkeypatch):
    counting = SyncCounter()
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original, _name=name, **kwargs):
            counting.record(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return counting


def test_a_datadam_iteration_never_waits_for_the_device(counter):
    data = load_dataset("digits")
    window, windows = 3, 2
    config = get_method("datadam").config("paper", "digits", 2)
    config = config.with_overrides(iterations=window * windows, log_every=window, batch_real=8, device="cpu")
    run = get_method("datadam").run_class(data, config, None, 0, False)
    step = run.step

    def counted_step(iteration):
        counter.phase = "iteration"
        try:
            return step(iteration)
        finally:
            counter.phase = "loop"

    run.step = counted_step
    with counter:
        run_loop(run, config, "datadam")
    in_iterations = [caller for phase, caller in counter.syncs if phase == "iteration"]
    assert in_iterations == []
    in_loop = [caller for phase, caller in counter.syncs if phase == "loop"]
    window_reads = [caller for caller in in_loop if "methods/base.py" in caller]
    assert len(window_reads) == windows, "\n".join(in_loop)  # one read of all loss terms per window
    assert all("synthetic.py" in caller for caller in in_loop if caller not in window_reads)  # the final set
