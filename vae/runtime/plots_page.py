"""Make `dvc plots show` pages that render offline: Vega, Vega-Lite and Vega-Embed inline.

DVC fills ``plots.html_template`` by text replacement, and its ``{scripts}`` placeholder
becomes ``<script src=...>`` tags that load the libraries from a CDN, so on a machine
without internet (a compute node, CI) the page is blank. ``make setup`` runs
``python -m vae.runtime.plots_page``: it writes ``.dvc/plots/page-offline.html``, the project's
page with one inline bundle of the three libraries from the pinned PyPI package
``vl-convert-python``, and points this clone's DVC at it in ``.dvc/config.local``
(machine-local, not committed). Without it, the committed CDN page is used.
"""

import subprocess
from pathlib import Path

import vl_convert

from vae.io import write_text

VEGA_LITE = "5.21"  # DVC's plots are Vega-Lite v5 specs
TEMPLATE = Path(".dvc/plots/page.html")
OFFLINE = Path(".dvc/plots/page-offline.html")


def offline_page(template: str) -> str:
    """``template`` with its ``{scripts}`` placeholder replaced by the inline bundle."""
    if "{scripts}" not in template:
        raise ValueError("the plots template has no {scripts} placeholder")
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE).replace("</script", "<\\/script")
    return template.replace("{scripts}", f"<script>{bundle}</script>")


def main() -> None:
    write_text(OFFLINE, offline_page(TEMPLATE.read_text(encoding="utf-8")))
    subprocess.run(["dvc", "config", "--local", "plots.html_template", str(OFFLINE.relative_to(".dvc"))],
                   check=True)
    print(f"wrote {OFFLINE} (Vega-Lite {VEGA_LITE}, Vega {vl_convert.get_vega_version()}, Vega-Embed "
          f"{vl_convert.get_vega_embed_version()}, inline); `dvc plots show` pages now render offline")


if __name__ == "__main__":
    main()
