"""Build template.html: DVC's plots page with vega, vega-lite and vega-embed inlined.

DVC's default page loads the three libraries from a CDN, so offline it is blank. This
script reads their minified builds from node_modules (the exact versions pinned in
package.json, installed by `npm ci --ignore-scripts`) and writes a template for
`dvc plots show/diff` (`plots.html_template` in .dvc/config) that needs no network, plus
the libraries' licences beside it. Run from anywhere: `python plots_template/build.py`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules"
# Load order matters: vega-lite needs the global `vega`, vega-embed both.
LIBRARIES = ("vega", "vega-lite", "vega-embed")
# DVC fills the template with str.replace on these; {scripts} (the CDN tags) is left out.
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")
# The npm package `vega` ships no LICENSE file; its monorepo (vega/vega) does, in each
# sub-package. This one's is the same text.
VEGA_LICENSE_FROM = "vega-view"

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>DVC Plot</title>
    <!-- Built by plots_template/build.py; do not edit. Inlined, so it works offline: {libs}.
         Licences: plots_template/LICENSE-* and THIRD-PARTY-LICENSES.txt. -->
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def fail(message: str) -> None:
    sys.exit(f"build.py: {message}")


def package_json(name: str) -> dict:
    path = MODULES / name / "package.json"
    if not path.is_file():
        fail(f"{path} is missing: run `npm ci --ignore-scripts` in {HERE}")
    return json.loads(path.read_text(encoding="utf-8"))


def licence_file(folder: Path) -> Path | None:
    files = sorted(p for p in folder.iterdir() if re.match(r"(?i)licen[cs]e", p.name))
    return files[0] if files else None


def script_tag(name: str, version: str) -> str:
    code = (MODULES / name / "build" / f"{name}.min.js").read_text(encoding="utf-8")
    # The source maps are not shipped: drop the comment that points to one.
    code = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "", code).strip()
    if re.search(r"(?i)</script|<script|<!--", code):
        fail(f"{name}.min.js contains a sequence that would end an inline <script>")
    if any(p in code for p in PLACEHOLDERS):
        fail(f"{name}.min.js contains a DVC placeholder; DVC would replace it")
    return f"    <script>/*! {name}@{version} */\n{code}\n    </script>"


def third_party_licences(pins: dict[str, str]) -> str:
    """Every other package in package-lock.json, with one copy of each distinct licence text."""
    lock = json.loads((HERE / "package-lock.json").read_text(encoding="utf-8"))["packages"]
    by_text: dict[str, list[str]] = {}
    missing: list[str] = []
    for key, entry in lock.items():
        name = key.rpartition("node_modules/")[2]
        if not key or (key == f"node_modules/{name}" and name in pins):
            continue  # the project itself; the three libraries have LICENSE-<name>
        label = f"{name}@{entry['version']} ({entry.get('license', '?')})"
        # An optional platform-specific package npm skipped here counts as "no file".
        lic = licence_file(HERE / key) if (HERE / key).is_dir() else None
        if lic is None:
            missing.append(label)
        else:
            by_text.setdefault(lic.read_text(encoding="utf-8").strip(), []).append(label)
    parts = [
        "Licences of the packages npm installs with vega, vega-lite and vega-embed\n"
        "(package-lock.json). The minified builds inlined in template.html bundle some of\n"
        "them; the others serve only the packages' Node command-line tools.\n"
    ]
    for text, labels in by_text.items():
        parts.append("=" * 78 + "\n" + "\n".join(labels) + "\n" + "-" * 78 + "\n" + text + "\n")
    if missing:
        parts.append(
            "=" * 78 + "\nNo licence file in the npm package (licence as package.json states;\n"
            "the vega-* ones come from the vega/vega monorepo, see LICENSE-vega):\n"
            + "\n".join(missing)
        )
    return "\n".join(parts) + "\n"


def main() -> None:
    pins = json.loads((HERE / "package.json").read_text(encoding="utf-8"))["dependencies"]
    assert set(pins) == set(LIBRARIES), pins
    for name in LIBRARIES:
        installed = package_json(name)["version"]
        if installed != pins[name]:
            fail(f"node_modules has {name}@{installed}, package.json pins {pins[name]}: npm ci")
    scripts = "\n".join(script_tag(name, pins[name]) for name in LIBRARIES)
    libs = ", ".join(f"{name}@{pins[name]}" for name in LIBRARIES)
    (HERE / "template.html").write_text(PAGE.format(libs=libs, scripts=scripts), encoding="utf-8")

    if package_json(VEGA_LICENSE_FROM).get("repository") != package_json("vega")["repository"]:
        fail(f"{VEGA_LICENSE_FROM} is no longer in vega's repository; pick another licence")
    for name in LIBRARIES:
        source = licence_file(MODULES / name)
        if source is None and name == "vega":
            source = licence_file(MODULES / VEGA_LICENSE_FROM)
        if source is None:
            fail(f"no licence file for {name}")
        (HERE / f"LICENSE-{name}").write_bytes(source.read_bytes())
    (HERE / "THIRD-PARTY-LICENSES.txt").write_text(third_party_licences(pins), encoding="utf-8")
    print(f"wrote {HERE / 'template.html'} ({libs})")


if __name__ == "__main__":
    main()
