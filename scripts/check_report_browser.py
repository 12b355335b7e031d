"""Render an rli HTML report in headless Chromium: is it self-contained, and does every image load?

    python scripts/check_report_browser.py DIR/report.html [--images N] [--screenshot PAGE.png]

Three checks:

1. Static: the page refers to nothing outside itself (every ``src``, ``href`` and CSS
   ``url(...)`` is a ``data:`` URI or an in-page ``#anchor``), and has no scripts.
2. In the browser: a copy of the page with a small inline script appended is loaded by
   ``chromium --headless --dump-dom``; after the ``load`` event the script records, for
   every ``<img>``, whether it decoded (``complete`` and ``naturalWidth > 0``) and its
   rendered size; the dumped DOM carries the record back. ``--images N`` also requires
   exactly N images.
3. With ``--screenshot``: the original page is rendered to a PNG (1280 px wide), which
   must decode and not be blank.

Exit status: 0 all checks passed, 1 a check failed, 2 Chromium is not installed (Debian:
``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_BROWSERS = ("chromium", "chromium-browser", "google-chrome")
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")
_PROBE = """<script>
window.addEventListener("load", () => {
  const record = Array.from(document.images, (img, i) => {
    const box = img.getBoundingClientRect();
    return {index: i, decoded: img.complete && img.naturalWidth > 0, natural: [img.naturalWidth, img.naturalHeight],
            shown: [Math.round(box.width), Math.round(box.height)], alt: img.alt.slice(0, 80)};
  });
  const out = document.createElement("pre");
  out.id = "rli-image-check";
  out.textContent = JSON.stringify(record);
  document.body.appendChild(out);
});
</script>"""
_RECORD = re.compile(r'<pre id="rli-image-check">(.*?)</pre>', re.DOTALL)


def find_browser() -> str | None:
    """Path of a Chromium-family browser on PATH, or ``None``."""
    return next((path for path in map(shutil.which, _BROWSERS) if path), None)


def external_references(page: str) -> list[str]:
    """Every reference in ``page`` to something outside it (not a data: URI or an in-page anchor), and scripts."""
    found = [m.group(2) for m in re.finditer(r'\b(src|href)\s*=\s*"([^"]*)"', page)]
    found += [m.group(1).strip("'\"") for m in re.finditer(r"url\(([^)]*)\)", page)]
    outside = [ref[:80] for ref in found if not ref.startswith(("data:", "#"))]
    return outside + ["<script> element"] * len(re.findall(r"<script\b", page, re.IGNORECASE))


def _run(browser: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="rli-chromium-") as profile:
        return subprocess.run([browser, *_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                              timeout=timeout, check=False)


def image_record(browser: str, page: Path, *, timeout: float = 120.0) -> list[dict]:
    """Load ``page`` (plus the probe script) in headless Chromium; one entry per ``<img>``: decoded, sizes, alt text."""
    text = page.read_text(encoding="utf-8")
    probe = text.replace("</body>", _PROBE + "</body>") if "</body>" in text else text + _PROBE
    with tempfile.TemporaryDirectory(prefix="rli-page-") as folder:
        copy = Path(folder) / "page.html"
        copy.write_text(probe, encoding="utf-8")
        done = _run(browser, "--virtual-time-budget=10000", "--window-size=1280,4000", "--dump-dom", copy.as_uri(),
                    timeout=timeout)
    match = _RECORD.search(done.stdout)
    if match is None:
        raise RuntimeError(f"Chromium returned no image record (exit {done.returncode}); stderr: {done.stderr[-2000:]}")
    return json.loads(html.unescape(match.group(1)))


def screenshot(browser: str, page: Path, out: Path, *, height: int = 4000, timeout: float = 120.0) -> None:
    """Render ``page`` to the PNG ``out`` (a 1280 px wide window, ``height`` tall)."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    done = _run(browser, f"--screenshot={out}", f"--window-size=1280,{height}", "--virtual-time-budget=10000",
                page.resolve().as_uri(), timeout=timeout)
    if not out.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {done.returncode}); stderr: {done.stderr[-2000:]}")


def _blank(png: Path) -> bool:
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    return float(pixels[..., :3].std()) == 0.0


def main(argv: list[str] | None = None) -> int:
    """Run the checks on one page; prints what it found and returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the report.html to check")
    parser.add_argument("--images", type=int, help="the number of images the page must have")
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help="also render the page to this PNG")
    parser.add_argument("--height", type=int, default=4000, help="window height of the screenshot (default: %(default)s)")
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("check_report_browser: no Chromium found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    problems = [f"refers outside the page: {ref}" for ref in external_references(args.page.read_text(encoding="utf-8"))]
    record = image_record(browser, args.page)
    for entry in record:
        state = "ok" if entry["decoded"] and min(entry["shown"]) > 0 else "NOT LOADED"
        print(f"img {entry['index']}: {state}, {entry['natural'][0]}×{entry['natural'][1]} px, shown "
              f"{entry['shown'][0]}×{entry['shown'][1]} — {entry['alt']}")
        if state != "ok":
            problems.append(f"image {entry['index']} did not load ({entry['alt']})")
    if args.images is not None and len(record) != args.images:
        problems.append(f"expected {args.images} images, the page has {len(record)}")
    if args.screenshot is not None:
        screenshot(browser, args.page, args.screenshot, height=args.height)
        if _blank(args.screenshot):
            problems.append(f"the screenshot {args.screenshot} is blank")
        else:
            print(f"screenshot: {args.screenshot}")
    for problem in problems:
        print(f"FAIL: {problem}")
    print(f"{args.page}: {len(record)} image(s), " + ("all checks passed" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
