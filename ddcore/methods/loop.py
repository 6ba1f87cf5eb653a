"""The one distillation loop every method runs (the shape of detectron2's `TrainerBase.train`).

It owns what methods used to copy: the iteration range (resumed runs start part-way), the loss
window (terms summed on the device, read back once per `log_every`), the progress bar, the
method's per-window checks (`DistillRun.after_window`) and the caller's callback, where trials log
to MLflow and Ray Tune reports and checkpoints. A method supplies only its `DistillRun`.
"""

from __future__ import annotations

from ddcore.methods.base import Callback, DistillRun, LossWindow, MethodConfig, StepReport
from ddcore.progress import progress_bar
from ddcore.synthetic import SyntheticSet


def run_loop(
    run: DistillRun,
    config: MethodConfig,
    name: str,
    callback: Callback | None = None,
    progress: bool = False,
    start_iteration: int = 0,
) -> SyntheticSet:
    """Iterations `start_iteration` .. `config.iterations`, reporting every `config.log_every` and after the last."""
    window = LossWindow()
    with progress_bar(f"distil {name}", config.iterations, enabled=progress) as bar:
        bar.advance(start_iteration)
        for iteration in range(start_iteration, config.iterations):
            window.add(**run.step(iteration))
            done = iteration + 1
            if done % config.log_every == 0 or done == config.iterations:
                means = window.flush(done)
                run.after_window(done)
                bar.advance(done - bar_position(done, config.log_every, start_iteration), status=_status(means))
                if callback is not None:
                    callback(StepReport(iteration=done, losses=means, snapshot=run.snapshot))
    return run.snapshot()


def bar_position(done: int, log_every: int, start_iteration: int) -> int:
    """Where the bar stood before this window: the previous multiple of `log_every` (or the start)."""
    return max(start_iteration, (done - 1) // log_every * log_every)


def _status(means: dict[str, float]) -> str:
    return f"loss {means['loss']:.3f}" if "loss" in means else ""
