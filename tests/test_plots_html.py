"""`dvc plots show` writes HTML that works offline: vega inlined by plots_template/.

DVC's default page loads vega, vega-lite and vega-embed from a CDN; .dvc/config points
`plots.html_template` at plots_template/template.html, which inlines the versions pinned in
plots_template/package.json. The fast tests read the template and the HTML `dvc plots show`
writes from the committed reports/; the slow one opens that HTML in headless Chromium with
every non-local request aborted and checks that each plot is drawn.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from browser import artifact_path, offline_context

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = REPO / "plots_template"
TEMPLATE = TEMPLATE_DIR / "template.html"
PINS: dict[str, str] = json.loads((TEMPLATE_DIR / "package.json").read_text())["dependencies"]
DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
PLOTS = DVC_YAML["plots"]
EXTERNAL = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["external"]
# Data plots, drawn by vega: the top-level ones, and the stages' own (a foreach stage's once
# per independent set it runs for).
N_STAGE_PLOTS = sum(
    len(stage.get("do", stage).get("plots", [])) * (len(EXTERNAL) if "foreach" in stage else 1)
    for stage in DVC_YAML["stages"].values()
)
N_VEGA = sum(isinstance(p, dict) for p in PLOTS) + N_STAGE_PLOTS
N_IMAGES = sum(isinstance(p, str) and p.endswith(".png") for p in PLOTS)  # shown as <img>


class _Resources(HTMLParser):
    """Every URL the page would load (script/img/iframe src, link href, CSS url()/@import).

    HTMLParser treats <script> and <style> content as text, so the URLs that the inlined
    libraries only mention (the vega editor link, schema ids) are not counted as loads.
    """

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if value and (name == "src" or (name == "href" and tag == "link")):
                self.urls.append((tag, value))

    def handle_data(self, data: str) -> None:
        if self._in_style:
            for url in re.findall(r"""(?:url\(|@import)\s*['"]?([^'")\s;]+)""", data):
                self.urls.append(("style", url))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False


def _is_remote(url: str) -> bool:
    return url.lower().startswith(("http:", "https:", "//", "ftp:", "ws:", "wss:"))


def _plots_show(out: Path) -> Path:
    """Run plain `dvc plots show` (the repo's config, so its template) into ``out``."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--out", str(out)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out / "index.html"


@pytest.fixture(scope="module")
def plots_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _plots_show(tmp_path_factory.mktemp("plots") / "dvc_plots")


# --------------------------------------------------------------------------- fast tests
def test_dvc_config_uses_the_template() -> None:
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        configured = repo.config["plots"]["html_template"]
        # DVC resolves a relative plots.html_template against .dvc/ (dvc/commands/plots.py).
        assert Path(repo.dvc_dir, configured).resolve() == TEMPLATE


def test_template_inlines_the_pinned_libraries() -> None:
    html = TEMPLATE.read_text(encoding="utf-8")
    assert html.count("{plot_divs}") == 1
    # DVC replaces {scripts} with its CDN <script src> tags: the template must not have it.
    assert "{scripts}" not in html
    assert set(PINS) == {"vega", "vega-lite", "vega-embed"}
    # build.py labels each inline <script> "/*! name@version */"; the library's own code
    # carries its version string too.
    blocks = {b.split(" */")[0].removeprefix("/*! "): b for b in html.split("<script>")[1:]}
    assert list(blocks) == [
        "vega@" + PINS["vega"],
        "vega-lite@" + PINS["vega-lite"],
        "vega-embed@" + PINS["vega-embed"],
    ]  # the order they load in
    for name, version in PINS.items():
        assert f'"{version}"' in blocks[f"{name}@{version}"], f"{name}'s code lacks {version}"
    parser = _Resources()
    parser.feed(html)
    assert parser.urls == []
    for name in PINS:
        assert (TEMPLATE_DIR / f"LICENSE-{name}").is_file()


def test_dvc_plots_show_loads_nothing_remote(plots_html: Path) -> None:
    html = plots_html.read_text(encoding="utf-8")
    parser = _Resources()
    parser.feed(html)
    remote = [url for url in parser.urls if _is_remote(url[1])]
    assert remote == [], f"the page loads remote resources: {remote}"
    assert not [u for t, u in parser.urls if t == "script"], "every script should be inline"
    for name, version in PINS.items():
        assert f"/*! {name}@{version} */" in html, f"{name} is not inlined"
    # One vegaEmbed call per data plot (DVC's per-plot <script>), one <img> per PNG plot,
    # each image copied beside the page.
    assert html.count("vegaEmbed('#") == N_VEGA >= 6
    images = [u for t, u in parser.urls if t == "img"]
    assert len(images) == N_IMAGES >= 6
    assert all((plots_html.parent / u).is_file() for u in images), images


# --------------------------------------------------------------------------- in Chromium
# Per plot (DVC's <div id=...>, which vegaEmbed fills and marks .vega-embed): the chart
# element vega drew (canvas or svg, class "marks"), its size, and how much it holds: on a
# canvas, pixels neither transparent nor white; in an svg, drawn shapes and text.
_CHARTS = "div[id].vega-embed .marks"
_MEASURE = """() => Array.from(document.querySelectorAll('div[id].vega-embed')).map(e => {
  const chart = e.querySelector('.marks');
  if (!chart) return {id: e.id, tag: null};
  const box = chart.getBoundingClientRect();
  let ink = 0;
  if (chart.tagName === 'CANVAS') {
    const d = chart.getContext('2d').getImageData(0, 0, chart.width, chart.height).data;
    for (let i = 0; i < d.length; i += 4)
      if (d[i + 3] > 0 && Math.min(d[i], d[i + 1], d[i + 2]) < 240) ink++;
  } else {
    ink = chart.querySelectorAll('path, rect, line, text').length;
  }
  return {id: e.id, tag: chart.tagName.toLowerCase(),
          width: box.width, height: box.height, ink: ink};
})"""
_IMAGES = """() => Array.from(document.querySelectorAll('div[id] img')).map(
  i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}))"""


@pytest.mark.slow
def test_plots_render_offline_in_chromium(chromium_browser, tmp_path: Path) -> None:
    html = _plots_show(tmp_path / "dvc_plots")
    context, attempted = offline_context(chromium_browser, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    shot = artifact_path("plots.png", tmp_path)
    try:
        page.goto(html.as_uri(), wait_until="load")
        if not page.evaluate("typeof vegaEmbed === 'function'"):
            pytest.fail(f"vega-embed did not load; requests aborted: {attempted}")
        page.wait_for_function(
            f"document.querySelectorAll({_CHARTS!r}).length >= {N_VEGA}", timeout=60_000
        )
        versions = page.evaluate("[vega.version, vegaLite.version, vegaEmbed.version]")
        charts = page.evaluate(_MEASURE)
        images = page.evaluate(_IMAGES)
    finally:  # the screenshot also shows what went wrong when the wait times out
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the offline plots page: {shot}")
        context.close()

    print(f"{len(charts)} vega charts:", ", ".join(f"{c['id']} {c['tag']}" for c in charts))
    assert attempted == [], f"the page tried to reach the network: {attempted}"
    assert errors == [], errors
    assert versions == [PINS["vega"], PINS["vega-lite"], PINS["vega-embed"]]
    assert len(charts) == N_VEGA >= 6, charts
    for chart in charts:
        assert chart["tag"] in ("canvas", "svg"), f"{chart['id']}: vega drew nothing"
        assert chart["width"] > 50 and chart["height"] > 50, chart
        least = 1000 if chart["tag"] == "canvas" else 10  # pixels, or svg shapes
        assert chart["ink"] > least, f"{chart['id']}: the chart is blank: {chart}"
    assert len(images) == N_IMAGES >= 6
    assert all(image["ok"] for image in images), images
