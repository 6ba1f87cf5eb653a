"""`ddorch report`: every part present, Markdown links resolve, and the HTML renders in a real
headless Chromium with no broken image (counted from the page itself)."""

import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from ddcore.analyses.continual import ContinualConfig
from ddcore.analyses.nas_proxy import NasProxyConfig
from orchestrator.analyses import analyse_run
from orchestrator.cli import app
from orchestrator.report import build_report

# After load: broken <img> of the report (naturalWidth 0) and of one planted broken control image.
PROBE = """<img class="probe-control" src="no-such-image.png">
<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = (list) => list.filter((img) => !img.complete || img.naturalWidth === 0).length;
  const report = images.filter((img) => !img.classList.contains("probe-control"));
  document.body.setAttribute("data-images", report.length);
  document.body.setAttribute("data-broken", broken(report));
  document.body.setAttribute("data-control-broken", broken(images) - broken(report));
});</script>"""


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


def test_html_renders_in_headless_chromium_without_broken_images(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    written, _ = report
    page = tmp_path / "probe.html"  # a copy elsewhere: embedded images must not need the report's folder
    page.write_text(written.html_path.read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    counts = {name: int(value) for name, value in re.findall(r'data-(images|broken|control-broken)="(\d+)"', dom)}
    assert counts["images"] == written.html_path.read_text().count("<img ") >= 7
    assert counts["control-broken"] == 1  # the probe does see a broken image
    assert counts["broken"] == 0


def test_cli_report_and_unknown_id(tiny_runs, tmp_path):
    uri, run_ids, _ = tiny_runs
    env = {"COLUMNS": "200"}
    result = CliRunner().invoke(
        app, ["report", run_ids[0], "--output-dir", str(tmp_path / "r"), "--tracking-uri", uri], env=env
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "report.md").is_file()
    missing = CliRunner().invoke(app, ["report", "nope", "--tracking-uri", uri], env=env)
    assert missing.exit_code == 2 and "'nope' is neither a run id nor a sweep name" in missing.output
