"""`ddorch report`: every part present, Markdown links resolve, and the HTML renders in a real
headless Chromium with no broken image (counted from the page itself)."""

import re
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from ddcore.analyses.continual import ContinualConfig
from ddcore.analyses.nas_proxy import NasProxyConfig
from orchestrator.cli import app
from orchestrator.engine.analyses import analyse_run
from orchestrator.store.run_schema import Tag
from orchestrator.views.report import build_report
from tests.ui_browser import rendered


# After load: broken <img> of the report (naturalWidth 0) and of one planted broken control image.
@pytest.fixture(scope="module")
def report(tiny_runs, tmp_path_factory):
    uri, run_ids, output_dir = tiny_runs
    analyse_run(
        "continual",
        run_ids[1],
        ContinualConfig(classes_per_task=5, model="MLP", seeds=1, epochs=1, herding_epochs=1, device="cpu"),
        uri,
        output_dir=output_dir,
    )
    analyse_run(
        "nas_proxy",
        run_ids[1],
        NasProxyConfig(pool=("MLP", "ConvNetD1W32"), proxy_epochs=1, full_epochs=1, full_per_class=3, device="cpu"),
        uri,
        output_dir=output_dir,
    )
    return build_report(run_ids, tmp_path_factory.mktemp("report") / "out", uri), run_ids


def test_report_has_every_part(report):
    written, run_ids = report
    titles = [section.title for section in written.sections]
    for expected in (
        "Setup",
        "Method: datadam",
        "Synthetic sets",
        "Distillation loss curves",
        "Accuracy vs IPC",
        "Cross-architecture generalisation",
        "Class-incremental continual learning",
        "Architecture-search proxy",
        "Reproduce",
    ):
        assert expected in titles
    assert "Full-data baseline" not in titles  # the tiny runs skipped it: no empty section
    markdown = written.markdown_path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) >= 7 and all((written.markdown_path.parent / link).is_file() for link in links)
    assert (
        "ddorch run --dataset digits --method datadam --ipc 2 --init real --model ConvNetD1 --preset paper --iterations 3"
        in markdown
    )
    assert "--no-baseline" in markdown and f"ddorch nas-proxy {run_ids[1]} --eval-models MLP,ConvNetD1W32" in markdown
    assert "Spearman rank correlation" in markdown and "torch " in markdown
    page = written.html_path.read_text()
    assert page.count("<img ") == len(links) and 'src="data:image/png;base64,' in page
    assert re.findall(r'src="(?!data:)', page) == []  # self-contained: no file or URL references
    # A summary first; versions once (every run recorded the same); code spans, not literal backticks.
    assert titles[0] == "Summary" and re.search(r"Best: \d+\.\d\d % test accuracy on ConvNetD1, run ", markdown)
    assert "compression ratio " in markdown and markdown.count("torch 2.") == 1
    text = re.sub(r"<pre>.*?</pre>", "", page, flags=re.S)
    assert "`" not in text and "<code>sqlite:///" in text


def trial(status, tags, params, metrics):
    from orchestrator.views.report import Trial

    info = SimpleNamespace(run_id="ab12cd34" + "0" * 24, status=status)
    return Trial(SimpleNamespace(info=info, data=SimpleNamespace(tags=tags, params=params, metrics=metrics)))


def test_stopped_trials_and_searched_settings_in_the_method_table():
    from orchestrator.views.report import Collector, method_sections

    params = {"method": "datadam", "dataset": "digits", "method_config.ipc": "5", "method_config.lr_images": "0.12345"}
    stopped = trial("KILLED", {Tag.STOPPED: "stopped early by the scheduler"}, params, {})
    history = {"eval_accuracy": [SimpleNamespace(step=50, value=0.7), SimpleNamespace(step=100, value=0.8961)]}
    collector = SimpleNamespace(client=SimpleNamespace(get_metric_history=lambda run_id, key: history[key]))
    stopped.stopped_at = Collector._stopped_at(collector, stopped.run)
    finished = trial("FINISHED", {}, params, {"acc_ConvNetD3_mean": 0.93, "distill_seconds": 12.0})
    table = method_sections([stopped, finished], ["ipc", "lr_images"])[0].tables[0]
    assert table.columns[7] == "lr_images" and "ipc" not in table.columns[7:]
    rows = [dict(zip(table.columns, row)) for row in table.rows]
    assert rows[0]["status"] == "stopped early at 100, 89.61 % then" and rows[0]["distill s"] == "-"
    assert rows[1]["status"] == "finished" and rows[1]["lr_images"] == "0.1235"
    assert "nan" not in str(table.rows) and "KILLED" not in str(table.rows)


@pytest.mark.integration
def test_html_renders_in_headless_chromium_without_broken_images(report, tmp_path):
    written, _ = report
    _, counts = rendered(written.html_path.read_text(), tmp_path)
    assert counts["images"] == written.html_path.read_text().count("<img ") >= 7
    assert counts["control-broken"] == 1  # the probe does see a broken image
    assert counts["broken"] == 0


def test_cli_report_and_unknown_id(tiny_runs, tmp_path):
    uri, run_ids, _ = tiny_runs
    env = {"COLUMNS": "200"}
    result = CliRunner().invoke(
        app,
        ["report", run_ids[0][:6], "--output-dir", str(tmp_path / "r"), "--tracking-uri", uri, "--title", "Tiny runs"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "<title>Tiny runs</title>" in (tmp_path / "r" / "report.html").read_text()
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "report.md").is_file()
    missing = CliRunner().invoke(app, ["report", "nope", "--tracking-uri", uri], env=env)
    assert missing.exit_code == 2 and "'nope' is neither a run id nor a sweep name" in missing.output


def test_trials_stopped_early_are_placed_apart_on_the_ipc_plot(monkeypatch, tmp_path):
    """A stopped trial (FINISHED, tagged stopped early) is drawn as its own marked series at its last
    quick evaluation, not omitted and not mixed into the finished runs' line; read from the plotted data."""
    import ddcore.visualize as visualize
    from orchestrator.views.report import Collector, ipc_plots, ipc_section

    def digits(ipc, status="FINISHED", tags=None, metrics=None):
        params = {"method": "datadam", "dataset": "digits", "method_config.ipc": str(ipc), "method_config.init": "real"}
        return trial(status, tags or {}, {**params, "eval_models": "['ConvNetD1']"}, metrics or {})

    finished = [
        digits(ipc, metrics={"acc_ConvNetD1_mean": acc, "acc_ConvNetD1_std": 0.01})
        for ipc, acc in ((1, 0.5), (10, 0.8))
    ]
    stopped = digits(10, tags={Tag.STOPPED: "stopped early by the scheduler", Tag.STOPPED_EARLY: "true"})
    history = {"eval_accuracy": [SimpleNamespace(step=4, value=0.31)]}
    collector = SimpleNamespace(client=SimpleNamespace(get_metric_history=lambda run_id, key: history[key]))
    stopped.stopped_at = Collector._stopped_at(collector, stopped.run)
    assert stopped.stopped_at == (4, 0.31)

    (plot,) = ipc_plots([*finished, stopped]).values()
    assert plot.curves() == {"datadam real init": [(1, 50.0, 49.0, 51.0), (10, 80.0, 79.0, 81.0)]}
    assert plot.stopped == {"datadam real init": [(10, 31.0)]}

    drawn = {}
    monkeypatch.setattr(
        visualize, "_label_and_save", lambda figure, axis, path, *labels: drawn.setdefault("axis", axis)
    )
    assert ipc_section([*finished, stopped], tmp_path) is not None
    series = {c.get_label(): c for c in drawn["axis"].collections if not c.get_label().startswith("_")}
    assert series["datadam real init (stopped early)"].get_offsets().tolist() == [[10.0, 31.0]]
    (bars,) = [c for c in drawn["axis"].containers if c.get_label() == "datadam real init"]
    assert bars.lines[0].get_xydata().tolist() == [[1.0, 50.0], [10.0, 80.0]]  # the finished runs only


def test_a_line_of_stopped_trials_only_is_still_drawn(monkeypatch, tmp_path):
    import ddcore.visualize as visualize

    drawn = {}
    monkeypatch.setattr(
        visualize, "_label_and_save", lambda figure, axis, path, *labels: drawn.setdefault("axis", axis)
    )
    visualize.save_accuracy_vs_ipc({}, {"dm": [(1, 20.0), (5, 40.0)]}, None, None, None, tmp_path / "plot.png")
    (series,) = [c for c in drawn["axis"].collections if c.get_label() == "dm (stopped early)"]
    assert series.get_offsets().tolist() == [[1.0, 20.0], [5.0, 40.0]]
