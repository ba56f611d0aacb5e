"""usage.md and benchmarks.md of real packages (built by tests/integration/test_verify.py from real SmolLM2 runs).

The examples in usage.md are checked for what they claim: the prompt shown is the prompt the llama.cpp backend
serves, and the curl and Python snippets, run as written against a real `python -m llama_cpp.server` on the
package's GGUF, return the answer recorded for that item.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from honed.display import fmt, fmt_ci
from tests.integration.test_verify import shared_package

pytestmark = pytest.mark.integration

USAGE_SECTIONS = ["## What it does", "## What it does not do", "## Prompt format", "## Examples",
                  "## Sampling settings and why", "## Hardware needs", "## Known limitations", "## How to retrain"]
BENCH_SECTIONS = ["## Base vs tuned", "## Quantization ladder", "## Before and after", "## Failures it still makes"]


def blocks(md: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)\n```$", md, flags=re.S | re.M)


@pytest.fixture
def classify(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return shared_package(tmp_path_factory)


def test_usage_has_every_section_and_numbers_from_their_sources(classify: dict[str, Any]) -> None:
    usage = (classify["root"] / "usage.md").read_text()
    positions = [usage.index(s) for s in USAGE_SECTIONS]
    assert positions == sorted(positions)
    gate, rung, m = classify["gate"], classify["ladder"]["rungs"][0], classify["manifest"]
    assert f"`macro_f1` ≥ {fmt(m.acceptance.min_value)}" in usage and m.acceptance.min_value == gate["threshold"]
    assert f"about {fmt(gate['tuned']['value'])} (95% CI {fmt_ci(gate['tuned']['ci'])}" in usage
    assert f"peaked at {fmt(rung['peak_memory_mb'], 0)} MB" in usage
    assert f"| {fmt(rung['p50_ms'], 1)} | {fmt(rung['p95_ms'], 1)} |" in usage
    assert "| temperature | 0.00 | greedy" in usage and "| max_tokens | 32 |" in usage
    # how to retrain: the run's settings as a [tune] table that `honed tune --config` reads
    toml = blocks(usage, "toml")[0]
    assert toml.startswith("[tune]") and 'learning_rate = 0.0005' in toml and "max_length" not in toml
    assert f"honed tune {gate['task_dir']} --config tune.toml" in usage


def test_example_prompts_are_what_the_backend_serves(classify: dict[str, Any]) -> None:
    from honed.backends.llamacpp import LlamaCppBackend
    from honed.evaluate.runner import sampling_for
    from honed.task.data import Item
    from honed.task.prompt import build_request

    usage = (classify["root"] / "usage.md").read_text()
    ids = re.findall(r"### Example \d: test item `([^`]+)`", usage)
    assert len(ids) == 3 and len(set(ids)) == 3
    anchors = {a.id: a for a in classify["anchors"]}
    task = classify["task"]
    with LlamaCppBackend(str(classify["root"] / classify["gguf"])) as be:
        served = [be.render(build_request(task, Item(i, anchors[i].inputs), sampling_for(task, 0))) for i in ids]
    assert blocks(usage, "text") == served
    assert all(p.startswith("<|im_start|>") and p.endswith("<|im_start|>assistant\n") for p in served)
    for i in ids:
        assert f"Expected answer: `{anchors[i].expected}`." in usage
    # the three transports, one per example, each carrying that item's own text
    ollama, curl, python = blocks(usage, "sh")[1], blocks(usage, "sh")[2], blocks(usage, "python")[0]
    assert ollama.startswith("ollama run support-triage:v1 <<'HONED_PROMPT'")
    for block, i in zip((ollama, curl, python), ids, strict=True):
        assert json.dumps(anchors[i].inputs["text"])[1:-1] in block or anchors[i].inputs["text"] in block


def test_curl_and_python_examples_answer_as_recorded(classify: dict[str, Any], tmp_path: Path) -> None:
    from tests.integration.test_openai_backend import _start_server, _stop

    usage = (classify["root"] / "usage.md").read_text()
    ids = re.findall(r"### Example \d: test item `([^`]+)`", usage)
    anchors = {a.id: a for a in classify["anchors"]}
    server = _start_server(tmp_path / "server.log")
    try:
        base = server.url.removesuffix("/v1")
        curl = blocks(usage, "sh")[2].replace("http://127.0.0.1:8080", base)
        out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=120, check=True).stdout
        curl_text = json.loads(out)["choices"][0]["message"]["content"]
        python = blocks(usage, "python")[0].replace("http://127.0.0.1:8080", base)
        py_text = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=120,
                                 check=True).stdout.rstrip("\n")
    finally:
        _stop(server)
    from honed.evaluate.output import parse_output
    from honed.types import Response

    task = classify["task"]
    for text, i in ((curl_text, ids[1]), (py_text, ids[2])):
        parsed = parse_output(task, anchors[i].inputs, Response(text=text, finish_reason="stop"))
        assert parsed.answer == anchors[i].answer, (i, text)


def test_benchmarks_numbers_and_examples_come_from_the_runs(classify: dict[str, Any]) -> None:
    bench = (classify["root"] / "benchmarks.md").read_text()
    for s in BENCH_SECTIONS + ["## Confusion matrix"]:
        assert s in bench
    gate, base, tuned = classify["gate"], classify["base"], classify["tuned"]
    assert f"| {fmt(gate['base']['value'])} | {fmt_ci(gate['base']['ci'])} | {fmt(gate['base']['p95_ms'], 1)} | " \
           f"`{base.run_id}` |" in bench
    assert f"p = {fmt(gate['p_value'], 4)}" in bench
    # the matrix printed for the tuned run has the cells `honed eval` wrote in that run's result.json (eval lists
    # only the classes it saw, sorted; the document lists every label in the task's order)
    conf = tuned.doc["metrics"]["confusion"]
    want = {(t, p): n for t, row in zip(conf["labels"], conf["matrix"], strict=True)
            for p, n in zip(conf["columns"], row, strict=True) if n}
    lines = [line.strip("|").split(" | ") for line in bench.split("### tuned")[1].split("### base")[0].splitlines()
             if line.startswith("| ")]
    header = [c.strip() for c in lines[0]]
    got = {(row[0].strip(), header[j]): int(c) for row in lines[1:] for j, c in enumerate(row) if j and int(c)}
    assert got == want and sum(want.values()) == len(tuned.records)
    # every before/after example really differs between the two runs, as the document says
    b, t = {r.id: r for r in base.records}, {r.id: r for r in tuned.records}
    shown = re.findall(r"### \d\. `([^`]+)` — (\w+)", bench)
    assert shown
    for i, change in shown:
        assert (b[i].answer, b[i].text) != (t[i].answer, t[i].text)
        assert (change == "fixed") == (t[i].correct and not b[i].correct)
    wrong = sum(not r.correct for r in tuned.records)
    assert f"{wrong} of {len(tuned.records)} test items are still wrong" in bench


@pytest.mark.parametrize("kind", ["pick", pytest.param("extract", marks=pytest.mark.slow), "generate"])
def test_other_kinds_document_and_verify(kind: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from honed.export.verify import verify

    opts: dict[str, Any] = {"n_eval": 4, "n_anchors": 2}
    if kind == "generate":  # cannot be constrained: the 'base' run samples instead, the greedy one ships
        opts.update(n_eval=3, n_anchors=1, eval_opts={"base": {"temperature": 1.0}}, anchors_from="tuned")
    if kind == "extract":  # a task that ships constrained to its JSON schema; the free base runs out of tokens
        opts.update(n_eval=2, n_anchors=1, eval_opts={"base": {"max_tokens": 48}}, anchors_from="tuned",
                    constrained=True)
    built = shared_package(tmp_path_factory, kind, **opts)
    usage = (built["root"] / "usage.md").read_text()
    bench = (built["root"] / "benchmarks.md").read_text()
    assert all(s in usage for s in USAGE_SECTIONS) and all(s in bench for s in BENCH_SECTIONS)
    if kind == "pick":
        assert "## Confusion matrix" in bench and "| NONE | PICK | WRONG_PICK" in bench
        assert "the number of the one that fits" in usage
    else:
        assert "## Confusion matrix" not in bench
        assert f"No confusion matrix for a `{kind}` task" in bench
        assert ("per-field" if kind == "extract" else "format rule") in bench
    if kind == "extract":
        assert '"properties"' in usage  # the schema it answers in
        assert "| constrained decoding | on |" in usage
        body = json.loads(blocks(usage, "sh")[2].split(" -d '", 1)[1].removesuffix("'"))
        assert body["response_format"] == {"type": "json_object", "schema": built["task"].schema}
    result = verify(built["root"])
    assert result.passed, (result.files, result.problems, [(a.id, a.recorded, a.answer) for a in result.anchors])


def test_base_model_without_chat_template_gets_plain_completion_examples(tmp_path: Path) -> None:
    """Gemma 3 270M base has no chat template: usage.md must show the plain prompt and the completion endpoint."""
    from honed.backends.llamacpp import LlamaCppBackend
    from honed.backends.models import resolve_gguf
    from honed.errors import ModelNotFound
    from honed.evaluate.runner import sampling_for
    from honed.export.docs import render_usage
    from honed.export.package import Acceptance, Manifest, Rung
    from honed.task.data import load_items
    from honed.task.prompt import build_request
    from honed.task.spec import load_task
    from tests.unit.test_export_docs import package_task

    try:
        gemma = resolve_gguf("gemma3-270m")
    except ModelNotFound as exc:
        pytest.skip(str(exc))
    root = package_task(tmp_path / "pkg", "classify")
    (root / "support-triage-gemma3-270m-v1-Q4_K_M.gguf").symlink_to(gemma)  # read only: no copy needed
    task = load_task(root / "task")
    manifest = Manifest(task=task.name, kind=task.kind, version="v1", base_model={"name": "gemma3-270m"},
                        rungs=[Rung(quant="Q4_K_M", file="support-triage-gemma3-270m-v1-Q4_K_M.gguf")],
                        recommended="Q4_K_M", acceptance=Acceptance(primary_metric="macro_f1", min_value=0.5),
                        gate={"status": None, "forced": True, "overrode": "no gate run"})
    usage = render_usage(root, manifest, task)
    assert "The model has no chat template (a base model)" in usage
    prompts = blocks(usage, "text")
    ids = re.findall(r"### Example \d: test item `([^`]+)`", usage)
    items = {i.id: i for i in load_items(task, "test")}
    with LlamaCppBackend(str(gemma)) as be:
        assert not be.info.chat_template
        assert prompts == [be.render(build_request(task, items[i], sampling_for(task, 0))) for i in ids]
    assert all(p.endswith("Answer:") for p in prompts)
    curl = blocks(usage, "sh")[2]
    assert "/v1/completions" in curl and '"prompt":' in curl and '"stop":' in curl
    assert "client.completions.create(" in blocks(usage, "python")[0]
    assert "choices[0].text" in blocks(usage, "python")[0]
    # exported without a gate: the limitations say so and invent no number
    assert "exported without a gate run (`--force`)" in usage and "expect `macro_f1`" not in usage
