"""`honed quantize` + `honed bakeoff` on the example classify task, and its HTML in headless Chromium.

Three arms are the tiny model's F16 GGUF and the two rungs `honed quantize` makes of it (tests/tiny_model.py:
the ladder, the statistics and the report are mechanics); the fourth is the real Gemma 3 270M base, kept because
only a real model without a chat template shows the plain-completion prompt, and a 241 MiB file a larger peak
memory than a tiny one."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from tests.conftest import EXAMPLES, REPO, require_models
from tests.conftest import honed_cli as honed

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def bakeoff(tmp_path_factory: pytest.TempPathFactory, tiny_model: Any) -> dict:
    require_models("gemma3-270m")
    tmp = tmp_path_factory.mktemp("bakeoff")
    home = tmp / "home"
    q = honed("quantize", str(tiny_model.gguf), "--to", "Q8_0,Q4_K_M", "--out", str(tmp / "ladder"), home=home)
    assert q.returncode == 0, q.stderr
    q8, q4km = tmp / "ladder" / "tiny-smollm2.Q8_0.gguf", tmp / "ladder" / "tiny-smollm2.Q4_K_M.gguf"
    assert q8.exists() and q4km.exists() and q8.stat().st_size > q4km.stat().st_size
    out = {k: tmp / f"bakeoff.{k}" for k in ("json", "md", "html")}
    proc = honed("bakeoff", str(EXAMPLES / "classify"), "--limit", "8",
                 "--arm", f"{tiny_model.gguf},label=tiny-F16", "--arm", f"{q8},label=tiny-Q8_0",
                 "--arm", f"{q4km},label=tiny-Q4_K_M", "--arm", "gemma3-270m",
                 "--json", str(out["json"]), "--md", str(out["md"]), "--html", str(out["html"]), home=home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"doc": json.loads(out["json"].read_text()), "paths": out, "stdout": proc.stdout}


def test_bakeoff_document(bakeoff: dict) -> None:
    doc = bakeoff["doc"]
    assert [a["label"] for a in doc["arms"]] == ["tiny-F16", "tiny-Q8_0", "tiny-Q4_K_M", "gemma3-270m"]
    shas = {a["model"]["sha256"] for a in doc["arms"]}
    assert len(shas) == 4  # four distinct model files, each traced by its hash
    for a in doc["arms"]:
        for key in ("metrics", "ci", "latency_ms", "ttft_ms", "tokens_per_s", "peak_memory_mb", "cost_per_1k",
                    "pareto", "vs_best"):
            assert key in a, key
        assert a["peak_memory_mb"] > 50 and a["memory_source"] == "process peak RSS"
        assert a["cost_per_1k"] > 0 and a["latency_ms"]["p95"] >= a["latency_ms"]["p50"] > 0
        assert all(c["cost_per_1k"] > 0 for c in a["cloud"])
    best = [a for a in doc["arms"] if a["best"]]
    assert len(best) == 1 and best[0]["vs_best"] is None and best[0]["pareto"]
    assert best[0]["primary"] == max(a["primary"] for a in doc["arms"])
    others = [a for a in doc["arms"] if not a["best"]]
    # vs_best is the raw paired p-value of each arm against the best, Holm-adjusted over the three comparisons
    # (reference: Holm's step-down written out here; raw p sorted ascending, (m - j) * p_j, running maximum, ≤ 1)
    raw = sorted((a["vs_best_detail"]["p_value_raw"], k) for k, a in enumerate(others))
    running, holm = 0.0, {}
    for j, (p, k) in enumerate(raw):
        running = max(running, min(1.0, (len(raw) - j) * p))
        holm[k] = running
    assert [a["vs_best"] for a in others] == [pytest.approx(holm[k], abs=1e-6) for k in range(len(others))]
    for a in others:
        assert a["vs_best_detail"]["diff"] == pytest.approx(a["primary"] - best[0]["primary"])
    # gemma3 is a base model: it ran with the plain completion prompt, and it is the largest file
    gemma = doc["arms"][3]
    assert gemma["model"]["prompt_format"] == "plain_completion"
    assert gemma["peak_memory_mb"] > doc["arms"][0]["peak_memory_mb"]
    md = bakeoff["paths"]["md"].read_text()
    assert "| tiny-Q8_0 |" in md and "Pareto" in md and md.strip() in bakeoff["stdout"]


def test_bakeoff_html_renders_offline_in_chromium(bakeoff: dict) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup --dev installs it when run as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    html = bakeoff["paths"]["html"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "bakeoff-report.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        requests: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(html.as_uri())
        page.wait_for_function("document.querySelectorAll('.plotly-graph-div .main-svg').length >= 4")
        n_plots = page.eval_on_selector_all(".plotly-graph-div", "els => els.length")
        points = page.eval_on_selector_all(".plotly-graph-div .scatterlayer .point", "els => els.length")
        # sorting works: click the P95 header twice and the column comes out descending
        page.click("table.sortable th:has-text('P95 ms')")
        page.click("table.sortable th:has-text('P95 ms')")
        col = page.eval_on_selector_all(
            "table.sortable:first-of-type tbody tr td:nth-child(7)", "els => els.map(e => parseFloat(e.textContent))")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith("file:")] == []
    assert n_plots == 3 + 4  # Pareto, latency, failures + one confusion matrix per arm
    assert points == 4  # one marker per arm on the Pareto scatter
    assert col == sorted(col, reverse=True)
    assert shot.stat().st_size > 50_000
