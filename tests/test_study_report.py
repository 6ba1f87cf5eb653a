"""`ddorch study report`: a tiny study on digits run for real (one trial part; one part left pending), its
report organised by the study's sections with the grid embedded, the pending part's command and Markdown
links that resolve; a report from results lines whose MLflow store is gone; the HTML in headless Chromium."""

import json
import re
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.engine.bench import BenchFolder
from orchestrator.engine.study import load_study
from orchestrator.views.study_report import build_study_report
from tests.ui_browser import rendered

STUDY = """
[study]
name = "tiny"
title = "A tiny study"

[[study.section]]
id = "distil"
title = "DataDAM on digits"
question = "How close does one image per class come?"

[[study.section]]
id = "upper"
title = "The full-data upper bound"
question = "What does the whole real set reach?"

[[row]]
name = "digits_datadam"
dataset = "digits"
preset = "paper"
ipc = 1
iterations = 2
eval_model = "ConvNetD1"
eval_seeds = 1
eval_epochs = 2
settings = { model = "ConvNetD1", batch_real = 8 }
group = "distil"

[[row]]
name = "digits_full_data"
dataset = "digits"
kind = "baseline"
eval_model = "ConvNetD1"
eval_seeds = 1
group = "upper"
"""
ENV = {"COLUMNS": "200"}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The tiny study's trial part run through `ddorch study run` into a SQLite store of its own, then
    `ddorch study report`; returns (study folder, report folder)."""
    root = tmp_path_factory.mktemp("study")
    (root / "presets" / "studies").mkdir(parents=True)
    (root / "presets" / "studies" / "tiny.toml").write_text(STUDY)
    uri, folder, out = f"sqlite:///{root / 'mlflow.db'}", root / "tiny", root / "report"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the store's artefacts go next to it
        patch.setenv("DDORCH_PRESETS", str(root / "presets"))
        patch.setenv("DDORCH_CACHE_DIR", str(root / "cache"))
        store = ["--tracking-uri", uri, "--folder", str(folder)]
        ran = CliRunner().invoke(
            app, ["study", "run", "tiny", "--only", "digits_datadam", "--device", "cpu", *store], env=ENV
        )
        assert ran.exit_code == 0, ran.output
        written = CliRunner().invoke(app, ["study", "report", "tiny", "--output-dir", str(out), *store], env=ENV)
        assert written.exit_code == 0, written.output
    return folder, out


def test_report_has_every_section_the_grid_and_the_pending_command(tiny_study):
    folder, out = tiny_study
    page, markdown = (out / "report.html").read_text(), (out / "report.md").read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == ["Study", "DataDAM on digits", "The full-data upper bound"]
    assert "Question: How close does one image per class come?" in page
    (line,) = [json.loads(text) for text in (folder / "results.jsonl").read_text().splitlines()]
    run = line["mlflow_run"]
    # The measured part: its accuracy, its run, its settings and the command that reproduces it.
    assert f"{100 * line['mean']:.2f} ± {100 * line['std']:.2f}" in page and run[:8] in page
    assert "ipc=1, iterations=2, eval_model=ConvNetD1, eval_seeds=1, eval_epochs=2, model=ConvNetD1" in markdown
    assert "ddorch study run tiny --only digits_datadam" in markdown
    # The grid embedded (the page needs no other file) and named by its part.
    assert page.count('src="data:image/png;base64,') == 1 and re.findall(r'src="(?!data:)', page) == []
    assert f"digits_datadam: digits datadam IPC 1, real init ({run[:8]})" in page
    # The pending part: listed in its section, with the command that runs it.
    upper = page.split("<h2>The full-data upper bound</h2>")[1]
    assert "Not run yet: <code>digits_full_data</code> (baseline)" in upper
    assert "ddorch study run tiny --only digits_full_data" in upper and NOT_FOUND_TEXT not in page
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 1 and all((out / link).is_file() for link in links)


NOT_FOUND_TEXT = "MLflow run not found"


def test_the_default_output_is_the_study_folder_and_unknown_studies_are_one_line(tiny_study, monkeypatch):
    folder, _ = tiny_study
    monkeypatch.setenv("DDORCH_PRESETS", str(folder.parent / "presets"))
    store = ["--tracking-uri", f"sqlite:///{folder.parent / 'mlflow.db'}", "--folder", str(folder)]
    result = CliRunner().invoke(app, ["study", "report", "tiny", *store], env=ENV)
    assert result.exit_code == 0, result.output
    assert (folder / "report.html").is_file() and (folder / "images").is_dir()
    missing = CliRunner().invoke(app, ["study", "report", "nope", *store], env=ENV)
    assert missing.exit_code == 2 and "unknown study 'nope'" in missing.output


def fake_line(row, per_seed=(), **more):
    """A results line as `engine.bench.record` writes one (no training); an analysis's or search's has no seeds."""
    measured = {}
    if per_seed:
        mean = sum(per_seed) / len(per_seed)
        std = (sum((a - mean) ** 2 for a in per_seed) / len(per_seed)) ** 0.5
        measured = {"protocol": "dc", "per_seed": per_seed, "mean": mean, "std": std, "seeds": len(per_seed)}
    times = {"distill_seconds": 60.0, "eval_seconds": 120.0, "wall_seconds": 200.0, "load_start": 0.1, "load_end": 0.2}
    where = {"machine": "a CPU", "commit": "abc1234", "date": "2026-12-05 10:00", "mlflow_run": "f" * 32}
    return {**asdict(row), "key": row.key(), **measured, **times, **where, **more}


GONE = """
[study]
name = "gone"
title = "A study whose store is gone"

[[study.section]]
id = "pad"
title = "PAD against DataDAM"

[[study.section]]
id = "more"
title = "Analysis and search"

[[row]]
name = "pad_ipc10"
dataset = "digits"
method = "pad"
group = "pad"

[[row]]
name = "datadam_ipc10"
dataset = "digits"
group = "pad"

[[row]]
name = "cross"
kind = "analysis"
analysis = "cross_arch"
of = "datadam_ipc10"
group = "more"

[[row]]
name = "lossless"
dataset = "digits"
kind = "search"
settings = { methods = ["datadam"], max_ipc = 10 }
group = "more"
"""


def test_a_report_from_results_lines_whose_store_is_gone(tmp_path):
    """PAD and DataDAM side by side with their difference and interval, an analysis's table and a search's
    answer, all from the lines; every run said not found; no empty store created."""
    (tmp_path / "gone.toml").write_text(GONE)
    study = load_study(tmp_path / "gone.toml")
    rows = {row.name: row for row in study.rows}
    table = {"title": "Cross-architecture accuracy", "columns": ["network", "acc %"], "rows": [["MLP", "71.00"]]}
    lines = [
        fake_line(rows["pad_ipc10"], [0.90, 0.91, 0.92]),
        fake_line(rows["datadam_ipc10"], [0.88, 0.89, 0.90]),
        fake_line(rows["cross"], table={**table, "notes": []}),
        fake_line(
            rows["lossless"],
            smallest_ipc={"datadam": None},
            answers={"datadam": "no lossless IPC up to 10"},
            target_accuracy=0.95,
            budget_spent=False,
        ),
    ]
    folder = BenchFolder(tmp_path / "gone")
    folder.path.mkdir()
    folder.results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    written = build_study_report(study, folder, tracking_uri=f"sqlite:///{tmp_path / 'no.db'}")
    markdown = written.markdown_path.read_text()
    assert not (tmp_path / "no.db").exists()
    assert [s.title for s in written.sections] == ["Study", "PAD against DataDAM", "Analysis and search"]
    assert "`pad_ipc10` − `datadam_ipc10`" in markdown and "+2.00 points (95 % interval" in markdown
    assert (
        "Cross-architecture accuracy (part cross, of part datadam_ipc10" in markdown and "| MLP | 71.00 |" in markdown
    )
    assert (
        "| datadam | - | no lossless IPC up to 10 |" in markdown
        and "target: 95.00 %, the full-data accuracy" in markdown
    )
    assert markdown.count(f"ffffffff ({NOT_FOUND_TEXT})") >= 4 and "(not found: no figures)" in markdown


@pytest.mark.integration
def test_the_study_report_renders_in_headless_chromium(tiny_study, tmp_path):
    _, out = tiny_study
    dom, counts = rendered((out / "report.html").read_text(), tmp_path)
    assert counts == {"images": 1, "broken": 0, "control-broken": 1}
    assert re.findall(r"<h2>(.*?)</h2>", dom) == ["Study", "DataDAM on digits", "The full-data upper bound"]
