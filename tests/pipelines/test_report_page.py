"""The HTML report as a person sees it: rendered by a real headless browser (Debian's chromium),
then read back through the DOM: the title, the header, every model's numbered marker with labels
that do not overlap, intervals only where measured, the Pareto front marked."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Appended to a copy of the page: measures what the browser laid out and writes it into the DOM.
PROBE = """<script>
const boxes = [...document.querySelectorAll('svg text.label')].map(t => {
  const b = t.getBoundingClientRect(); return {text: t.textContent, x: b.x, y: b.y, w: b.width, h: b.height};
});
const out = {
  title: document.title, h1: document.querySelector('h1').textContent,
  summary: document.querySelector('p').textContent, labels: boxes,
  circles: document.querySelectorAll('svg circle').length,
  outlined: document.querySelectorAll('svg circle[stroke="#000"]').length,
  intervals: document.querySelectorAll('svg line[stroke-width="2"]').length,
  front: document.querySelectorAll('svg polyline').length,
};
const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def render(page, tmp_path) -> dict:
    if CHROMIUM is None:
        pytest.fail("the report is tested in a real browser: apt-get install chromium (.ci/run does)")
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text() + PROBE)
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    start = dom.index('<pre id="probe">') + len('<pre id="probe">')
    import html

    return json.loads(html.unescape(dom[start : dom.index("</pre>", start)]))


def _overlap(a, b) -> bool:
    return (
        a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
    )


def test_the_optimize_report_reads_right_in_a_browser(tmp_path):
    from edgeinfer.pipelines.optimize.search import Budgets, Candidate, OptimizeReport, write_html

    # Five candidates, four of them measured within a hair of each other: their markers coincide.
    def cand(name, p50, acc, size, ci=None):
        return Candidate(name, [], metrics={"accuracy": acc}, drop=0.98 - acc, p50_ms=p50, speedup=0.5 / p50,
                         speedup_ci95=ci, size_bytes=size)  # fmt: skip

    candidates = [
        cand("fp32", 0.50, 0.980, 250_000, (1.0, 1.0)),
        cand("int8-dynamic", 0.301, 0.979, 70_000, (1.5, 1.8)),
        cand("int8-static", 0.300, 0.979, 70_000),
        cand("int8-static-per-tensor", 0.302, 0.978, 69_000),
        cand("int8-static-keep3", 0.303, 0.980, 80_000),
    ]
    result = OptimizeReport(device="x86-avx512-vnni", objective="latency", budgets=Budgets(), task="classification",
                            candidates=candidates, chosen="int8-dynamic", pareto=["fp32", "int8-dynamic"])  # fmt: skip
    page = tmp_path / "report.html"
    write_html(candidates, result, page)
    shown = render(page, tmp_path)
    assert shown["title"] == shown["h1"] == "edgeinfer optimize"
    assert (
        "5 candidates measured for x86-avx512-vnni" in shown["summary"] and "chosen: int8-dynamic" in shown["summary"]
    )
    assert "0 samples" not in shown["summary"] and "batch {}" not in shown["summary"]
    assert sorted(b["text"] for b in shown["labels"]) == ["1", "2", "3", "4", "5"] and shown["circles"] == 5
    for i, a in enumerate(shown["labels"]):
        for b in shown["labels"][i + 1 :]:
            assert not _overlap(a, b), (a, b)
    assert shown["intervals"] == 1  # only int8-dynamic had a measured interval
    assert shown["outlined"] == 2 and shown["front"] == 1  # the Pareto front, outlined and joined
