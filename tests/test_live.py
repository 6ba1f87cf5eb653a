"""The sweep's live view: its state and what it draws, fed by fake Ray Tune trials."""

from types import SimpleNamespace

from rich.console import Console

from orchestrator.live import LiveView, SweepProgress, TrialState


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
    assert progress.best_line() == "best so far: 91.00 % at iteration 100 (lr_images=0.1)"


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
