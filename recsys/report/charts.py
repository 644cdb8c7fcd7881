"""Charts that display without a network: an Altair renderer, the Vega bundle it needs, files.

The book's pages load one JavaScript bundle (Vega, Vega-Lite and Vega-Embed, built by
vl-convert) from the site itself. :func:`enable_offline_charts` registers and enables an Altair
renderer whose HTML calls ``vegaEmbed`` from that bundle and names no external URL, so a
published page shows every chart with no network. :func:`save_chart` writes a chart to an SVG or
PNG file through vl-convert, also without a network.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from pathlib import Path
from typing import Any, Final

import altair as alt
import vl_convert as vlc

log = logging.getLogger(__name__)

RENDERER_NAME: Final = "recsys-offline"
CHART_CLASS: Final = "recsys-chart"
BUNDLE_NAME: Final = "vega.js"
# The mode is given, so the spec needs no "$schema" URL; no action links lead off the page.
EMBED_OPTIONS: Final[dict[str, Any]] = {"actions": False, "mode": "vega-lite", "renderer": "svg"}

# Ids of chart containers must be unique within a page, even for two equal charts.
_chart_counter = itertools.count(1)


def vegalite_version() -> str:
    """The ``major.minor`` Vega-Lite version that matches Altair's schema, as vl-convert names it.

    Falls back to vl-convert's newest version (with a warning) when it lacks Altair's.
    """
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    available = vlc.get_vegalite_versions()
    if major_minor in available:
        return major_minor
    log.warning("vl-convert has no Vega-Lite %s (it has %s); using %s", major_minor,
                ", ".join(available), available[-1])
    return available[-1]


def javascript_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script that defines ``window.vegaEmbed``."""
    return vlc.javascript_bundle(vl_version=vegalite_version())


def write_bundle(directory: str | Path) -> Path:
    """Write the bundle to ``directory/vega.js``, leaving an identical file untouched.

    Returns the bundle's path. Not rewriting an unchanged file keeps its modification time, so
    tools that watch the site's files do not rebuild for nothing.
    """
    path = Path(directory) / BUNDLE_NAME
    bundle = javascript_bundle().encode()
    if path.is_file() and path.read_bytes() == bundle:
        log.debug("bundle %s is up to date", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bundle)
    log.info("wrote %s (%d kB)", path, len(bundle) // 1024)
    return path


def chart_html(spec: dict[str, Any], embed_options: dict[str, Any] | None = None) -> str:
    """HTML that draws a Vega-Lite ``spec`` with the page's ``vegaEmbed``; no external URL.

    The spec travels in a JSON script element (with ``<`` escaped, so no text in the data can
    close the element); a short script hands it to ``vegaEmbed``, or says in the page that the
    bundle is missing. The spec's ``$schema`` URL is left out: the embed options name the mode.
    """
    spec = {key: value for key, value in spec.items() if key != "$schema"}
    spec_json = json.dumps(spec, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(spec_json.encode()).hexdigest()[:12]
    div_id = f"{CHART_CLASS}-{digest}-{next(_chart_counter)}"
    options = json.dumps({**EMBED_OPTIONS, **(embed_options or {})}, sort_keys=True)
    return (
        f'<div id="{div_id}" class="{CHART_CLASS}"></div>\n'
        f'<script type="application/json" id="{div_id}-spec">'
        f"{_escape_for_script(spec_json)}</script>\n"
        "<script>\n"
        "(function () {\n"
        f'  var el = document.getElementById("{div_id}");\n'
        f'  var spec = JSON.parse(document.getElementById("{div_id}-spec").textContent);\n'
        '  if (typeof vegaEmbed !== "function") {\n'
        '    el.textContent = "This chart needs the page\'s Vega bundle, which did not load.";\n'
        "    return;\n"
        "  }\n"
        f"  vegaEmbed(el, spec, {options}).catch(function (error) {{\n"
        '    el.textContent = "This chart could not be drawn: " + error;\n'
        "  });\n"
        "})();\n"
        "</script>"
    )


def _escape_for_script(text: str) -> str:
    """Escape characters that could end a script element; the JSON stays equivalent."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def offline_renderer(spec: dict[str, Any], **metadata: Any) -> dict[str, str]:
    """Altair renderer: an HTML mime bundle drawn by the page's Vega bundle."""
    html = chart_html(spec, metadata.get("embed_options"))
    return {"text/html": html, "text/plain": "<Altair chart>"}


def enable_offline_charts() -> None:
    """Register the offline renderer with Altair and make it the active one."""
    alt.renderers.register(RENDERER_NAME, offline_renderer)
    alt.renderers.enable(RENDERER_NAME)


def save_chart(chart: alt.TopLevelMixin, path: str | Path, *, scale: float = 2.0) -> Path:
    """Write ``chart`` to ``path`` as SVG or PNG (chosen by the suffix) through vl-convert.

    ``scale`` multiplies a PNG's pixel size (default 2, sharp on high-density screens).
    """
    path = Path(path)
    spec = chart.to_dict()
    version = vegalite_version()
    suffix = path.suffix.lower()
    if suffix == ".svg":
        path.write_text(vlc.vegalite_to_svg(spec, vl_version=version), encoding="utf-8")
    elif suffix == ".png":
        path.write_bytes(vlc.vegalite_to_png(spec, vl_version=version, scale=scale))
    else:
        raise ValueError(f"path: expected a .svg or .png file, got {path.name!r}")
    return path
