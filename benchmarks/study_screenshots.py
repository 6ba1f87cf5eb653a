"""Screenshots of a study's report for RESULTS.md: the page `ddorch study report` writes, in headless Chromium
(tests/ui_browser.py), after checking that every section is on it and no image is broken. One PNG for the
parts table and one per section with a measured part, named `study_<study>_<section id>.png`.

    PYTHONPATH=$PWD python benchmarks/study_screenshots.py project-a --folder benchmarks/studies/project-a

The report is written to a temporary folder (the study folder's own report is left as it is); the MLflow
store is the one `ddorch` uses here (MLFLOW_TRACKING_URI, or ./mlflow.db).
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.engine.bench import load_results  # noqa: E402
from orchestrator.engine.study import find_study, load_study, study_folder  # noqa: E402
from orchestrator.views.study_report import build_study_report, sections_of  # noqa: E402
from tests.ui_browser import Browser, chromium  # noqa: E402

FIGURES = ROOT / "benchmarks" / "figures"
WIDTH, MOST_HEIGHT = 1200, 3200  # a section taller than this is cut at its top 3,200 pixels
IMAGES_LOADED = "[...document.images].every(i => i.complete)"
BROKEN = "[...document.images].filter(i => i.naturalWidth === 0).length"
# Each h2's box in page coordinates, from its top to the next h2's top (the last: to the page's end).
SECTION_BOXES = """(() => {
  const heads = [...document.querySelectorAll('h2')];
  const top = (e) => e.getBoundingClientRect().top + window.scrollY;
  return heads.map((h, i) => ({title: h.textContent, y: top(h) - 8,
    end: i + 1 < heads.length ? top(heads[i + 1]) - 8 : document.documentElement.scrollHeight}));
})()"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--folder", type=Path, help="the study's folder (default: its own)")
    args = parser.parse_args()
    binary = chromium()
    if binary is None:
        sys.exit("chromium is not installed")
    study = load_study(find_study(args.study))
    folder = study_folder(study, args.folder)
    measured = {line["key"] for line in load_results(folder.results)}
    shot = {0: "parts"}  # h2 number -> file suffix; the first h2 is the parts table
    for number, section in enumerate(sections_of(study), start=1):
        if any(row.key() in measured for row in study.section_rows(section)):
            shot[number] = section.id
    with tempfile.TemporaryDirectory() as scratch:
        report = build_study_report(study, folder, Path(scratch))
        browser = Browser(binary, width=WIDTH, height=900)
        try:
            shoot(browser, report, study.name.replace("-", "_"), shot)
        finally:
            browser.close()


def shoot(browser: Browser, report, name: str, shot: dict[int, str]) -> None:
    browser.open(report.html_path.as_uri(), report.sections[-1].title)
    browser.wait_until(IMAGES_LOADED)
    # A viewport as tall as the page: every box is measured in the layout that is captured.
    height = browser.evaluate("document.documentElement.scrollHeight")
    browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height, deviceScaleFactor=1, mobile=False)
    boxes = browser.evaluate(SECTION_BOXES)
    titles = [section.title for section in report.sections]
    missing = [title for title in titles if title not in [box["title"] for box in boxes]]
    images, broken = browser.evaluate("document.images.length"), browser.evaluate(BROKEN)
    print(f"{len(boxes)} sections on the page ({len(missing)} missing: {missing}); {images} images, {broken} broken")
    if missing or broken:
        sys.exit("the report does not render whole")
    for number, suffix in shot.items():
        box = boxes[number]
        clip = {"x": 0, "y": box["y"], "width": WIDTH, "height": min(box["end"] - box["y"], MOST_HEIGHT), "scale": 1}
        reply = browser.call("Page.captureScreenshot", format="png", clip=clip)
        path = FIGURES / f"study_{name}_{suffix}.png"
        path.write_bytes(base64.b64decode(reply["data"]))
        print(f"{path.relative_to(ROOT)}: {box['title']} ({clip['height']:.0f} px)")


if __name__ == "__main__":
    main()
