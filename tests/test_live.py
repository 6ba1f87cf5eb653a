"""The live views: the sweep's fed by fake Ray Tune trials, the lossless search's by fake evaluations."""

from types import SimpleNamespace

from rich.console import Console

from orchestrator.views.live import IPCState, LiveView, LosslessProgress, LosslessView, SweepProgress, TrialState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def trial(trial_id: str, lr: float):
    return SimpleNamespace(trial_id=trial_id, config={"lr_images": lr})


def drive(view: LiveView, clock: Clock) -> None:
    """Four trials of 100 iterations, two at a time: one finishes, one is stopped at 50, one fails."""
    a, b, c, d = trial("a", 0.1), trial("b", 1.0), trial("c", 10.0), trial("d", 3.0)
    view.setup()
    view.on_trial_start(0, [], a)
    view.on_trial_start(0, [], b)
    clock.now += 30
    view.on_trial_result(0, [], a, {"eval_accuracy": 0.80, "iteration": 50})
    view.on_trial_result(0, [], b, {"eval_accuracy": 0.60, "iteration": 50})
    view.on_trial_complete(0, [], b)  # ASHA: stopped at 50 of 100
    view.on_trial_start(0, [], c)
    clock.now += 30
    view.on_trial_result(0, [], a, {"eval_accuracy": 0.91, "iteration": 100})
    view.on_trial_complete(0, [], a)
    view.on_trial_error(0, [], c)
    view.on_trial_start(0, [], d)


def test_counts_best_and_time_left():
    clock = Clock()
    progress = SweepProgress("demo", total=5, iterations=100, clock=clock)
    view = LiveView(progress, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    drive(view, clock)
    assert [progress.count(s) for s in TrialState] == [1, 1, 1, 1]
    assert progress.best().accuracy == 0.91 and progress.best().config == {"lr_images": 0.1}
    # 3 of 5 trials ended in 60 s (d has not reported): 2 more take about 40 s.
    assert progress.seconds_left() == 40.0
    assert progress.headline() == (
        "Sweep demo: 1 running, 1 finished, 1 stopped early, 1 failed, 1 waiting of 5 trials; "
        "elapsed 1:00, about 0:40 left"
    )
    assert progress.best_line() == (
        "best so far: 91.00 % at iteration 100 on 1 distilled set (lr_images=0.1), ranked on the test set"
    )


def test_nothing_reported_yet():
    progress = SweepProgress("demo", total=2, iterations=10)
    assert progress.seconds_left() is None and "estimating time left" in progress.headline()
    assert progress.best_line() == "best so far: none reported yet"


def test_drawn_view_off_a_terminal_is_printed_once_at_the_end(tmp_path):
    clock = Clock()
    out = tmp_path / "view.txt"
    with out.open("w") as file:
        view = LiveView(SweepProgress("demo", 5, 100, clock), Console(file=file, width=60))
        drive(view, clock)
        view.on_experiment_end([])
    text = out.read_text()
    assert text.count("Sweep demo:") == 1 and "best so far: 91.00 %" in text
    for row in ("stopped early", "50/100", "failed", "100/100", "lr_images"):
        assert row in text


def test_the_callback_pickles_without_its_terminal():
    import pickle

    view = LiveView(SweepProgress("demo", 1, 10), Console())
    assert pickle.loads(pickle.dumps(view)).progress.name == "demo"


def test_a_restored_callback_draws_here_and_continues_from_its_checkpointed_state():
    """What `Tuner.restore` does with it: unpickle the one saved with the run config, then `set_state`."""
    import pickle

    clock = Clock()
    progress = SweepProgress("demo", total=5, iterations=100, clock=clock)
    view = LiveView(progress, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    saved_with_run_config = pickle.dumps(view)
    drive(view, clock)
    checkpoint = pickle.loads(pickle.dumps(view.get_state()))
    clock.now += 1000  # the sweep was down; that time is not the sweep's
    restored = pickle.loads(saved_with_run_config)
    restored.set_state(checkpoint)
    assert restored.display.console is not None and restored.progress.stopwatch.elapsed() == 60.0
    assert [restored.progress.count(s) for s in TrialState] == [1, 1, 1, 1]
    assert restored.progress.best().accuracy == 0.91


# --- the lossless search's view -------------------------------------------------------------------


def evaluation(method, ipc, status, accuracy, lossless=False, reused=False):
    decision = SimpleNamespace(seeds=3) if status == "finished" else None
    return SimpleNamespace(
        method=method,
        ipc=ipc,
        status=status,
        accuracy_mean=accuracy,
        lossless=lossless,
        reused=reused,
        decision=decision,
        distill_sets=1,
    )


def lossless_search(clock: Clock, console: Console) -> LosslessView:
    """datadam on max IPC 10, two at a time: IPC 1 stopped early, 2 lossy, 5 lossless, 10 reused."""
    view = LosslessView(
        LosslessProgress("digits with ConvNetD3", ("datadam",), 10, concurrency=2, clock=clock), console
    )
    view.begin(threshold=0.95)
    view.evaluated(evaluation("datadam", 10, "finished", 0.97, lossless=True, reused=True))
    view.launched("datadam", 1)
    view.launched("datadam", 2)
    clock.now += 30
    view.evaluated(evaluation("datadam", 1, "stopped early", 0.40))
    view.launched("datadam", 5)
    clock.now += 30
    view.evaluated(evaluation("datadam", 2, "finished", 0.90))
    clock.now += 30
    view.evaluated(evaluation("datadam", 5, "finished", 0.96, lossless=True))
    view.launched("datadam", 3)
    return view


def test_lossless_counts_smallest_lossless_and_time_left():
    clock = Clock()
    view = lossless_search(clock, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    progress = view.progress
    assert progress.count("datadam", IPCState.RUNNING) == 1 and progress.smallest_lossless("datadam") == 5
    # lossy at 2, lossless at 5: bisection needs at most ceil(log2 3) = 2 more (3 is running)
    assert progress.trials_left("datadam") == 2
    # trials took 30, 60 and 60 s (the reused one took nothing here): mean 50 s; 2 left, 2 at a
    # time, the running one just started
    assert progress.seconds_left() == 50.0
    assert progress.headline() == (
        "Lossless search digits with ConvNetD3 (lossless at 95.00 %); elapsed 1:30, about 0:50 left"
    )
    assert progress.method_line("datadam") == (
        "datadam: 1 running, 3 evaluated (2 lossless), 1 stopped early, 0 failed; "
        "smallest lossless IPC so far: 5; at most 2 IPCs to go"
    )


def test_lossless_view_off_a_terminal_prints_each_evaluation_then_the_view_once(tmp_path):
    out = tmp_path / "view.txt"
    with out.open("w") as file:
        view = lossless_search(Clock(), Console(file=file, width=100))
        view.end()
    text = out.read_text()
    assert "datadam IPC 2: 90.00 % on 1 distilled set x 3 networks, lossy (finished)" in text
    assert "datadam IPC 10: 97.00 % on 1 distilled set x 3 networks, lossless (finished, reused from MLflow)" in text
    assert text.count("Lossless search digits") == 1
    table = text[text.index("Lossless search") :]
    for cell in ("stopped early", "-5.00", "+1.00", "reused", "1:00", "running"):
        assert cell in table


def test_no_time_left_before_a_trial_ends():
    progress = LosslessProgress("x", ("datadam", "random"), 50, concurrency=1)
    progress.launched("datadam", 1)
    assert progress.seconds_left() is None and "estimating time left" in progress.headline()
    assert "target: resolving" in progress.headline()


def test_on_a_terminal_the_view_is_redrawn_in_place_while_the_clock_runs():
    import io

    buffer = io.StringIO()
    clock = Clock()
    view = LosslessView(
        LosslessProgress("x", ("datadam",), 10, 1, clock=clock), Console(file=buffer, force_terminal=True)
    )
    view.begin(0.9)
    assert view.display.live.is_started
    view.launched("datadam", 1)
    clock.now += 61
    view.display.changed()
    view.end()
    text = buffer.getvalue()
    assert not view.display.live.is_started and "\x1b[2K" in text  # lines erased and drawn again
    assert "elapsed 0:00" in text and "elapsed 1:01" in text
