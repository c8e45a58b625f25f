"""Open the report in headless Chromium: every referenced image must load and have a size.

Used by the end-to-end test and by ``python -m hnc_petct.pipeline.browser_check REPORT.html [--screenshot PNG]``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]

_PROBE = """<script>
window.addEventListener('load', () => {
  const rows = Array.from(document.images).map(i => ({src: i.getAttribute('src'), complete: i.complete,
                                                        width: i.naturalWidth, height: i.naturalHeight}));
  const pre = document.createElement('pre'); pre.id = 'hnc-image-probe';
  pre.textContent = JSON.stringify(rows); document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-800:]}")
    return proc.stdout


def probe_images(html_path: str | Path, chromium: str | None = None) -> list[dict]:
    """Load ``html_path`` in headless Chromium and return, per <img>, its src and rendered natural size."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found (Debian: apt-get install chromium)")
    html_path = Path(html_path).resolve()
    text = html_path.read_text().replace("</body>", _PROBE + "</body>")
    with tempfile.TemporaryDirectory() as profile:
        probe = html_path.with_name(".browser-probe.html")  # same folder: relative image paths still resolve
        probe.write_text(text)
        try:
            dom = _run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                        "--allow-file-access-from-files", "--dump-dom", probe.as_uri()])
        finally:
            probe.unlink(missing_ok=True)
    m = re.search(r'<pre id="hnc-image-probe">(.*?)</pre>', dom, re.S)
    if not m:
        raise RuntimeError("the probe script did not run: the page did not finish loading")
    import html as _html

    return json.loads(_html.unescape(m.group(1)))


def screenshot(html_path: str | Path, png: str | Path, width: int = 1200, height: int = 2400,
               chromium: str | None = None) -> Path:
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found (Debian: apt-get install chromium)")
    png = Path(png).resolve()
    with tempfile.TemporaryDirectory() as profile:
        _run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
              f"--screenshot={png}", Path(html_path).resolve().as_uri()])
    return png


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("html")
    ap.add_argument("--screenshot", default=None)
    args = ap.parse_args(argv)
    rows = probe_images(args.html)
    bad = [r for r in rows if not r["complete"] or r["width"] == 0]
    for r in rows:
        print(f"{'ok ' if r not in bad else 'BAD'} {r['width']}x{r['height']} {r['src']}")
    if args.screenshot:
        print(f"screenshot: {screenshot(args.html, args.screenshot)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
