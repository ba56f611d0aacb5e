"""usage.md and benchmarks.md of real packages (tests/integration/_package.py: the tiny model's GGUF as the rung,
two real eval runs of it through llama.cpp, one free and one constrained as the package ships).

The documents are checked for what they claim, which holds for any model: their numbers are the runs' and the
ladder's, the prompt shown is the prompt the llama.cpp backend serves, and the curl and Python snippets, run as
written against a real `python -m llama_cpp.server` on the package's GGUF, return the answer recorded for that
item (under the grammar they carry: without it the random weights would not write a label at all). A base model
without a chat template is the real Gemma 3 270M base (its GGUF is only read: a prompt is rendered, nothing is
generated), the one such model installed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import start_llama_server, stop_llama_server
from tests.integration._package import COST_PER_1K, PEAK_MB, shared_package

pytestmark = pytest.mark.integration

USAGE_SECTIONS = ["## What it does", "## What it does not do", "## Prompt format", "## Examples",
                  "## Sampling settings and why", "## Hardware needs", "## Known limitations", "## How to retrain"]
BENCH_SECTIONS = ["## Base vs tuned", "## Quantization ladder", "## Before and after", "## Failures it still makes"]


def blocks(md: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)\n```$", md, flags=re.DOTALL | re.MULTILINE)


def f3(value: float) -> str:
    """A metric as the documents print it: three decimals (written here, not with honed's own formatter)."""
    return f"{value:.3f}"


def ci3(ci: list[float]) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


@pytest.fixture
def classify(tmp_path_factory: pytest.TempPathFactory, tiny_model: Any) -> dict[str, Any]:
    return shared_package(tmp_path_factory, tiny_model.gguf)


def test_usage_has_every_section_and_numbers_from_their_sources(classify: dict[str, Any]) -> None:
    usage = (classify["root"] / "usage.md").read_text()
    positions = [usage.index(s) for s in USAGE_SECTIONS]
    assert positions == sorted(positions)
    gate, rung, m = classify["gate"], classify["ladder"]["rungs"][0], classify["manifest"]
    assert f"`macro_f1` ≥ {f3(m.acceptance.min_value)} on the locked test set" in usage
    assert m.acceptance.min_value == gate["threshold"]
    assert "The task's own bar is `macro_f1` ≥ 0.800" in usage  # examples/classify's [acceptance] min_value
    assert f"about {f3(gate['tuned']['value'])} (95% CI {ci3(gate['tuned']['ci'])}, 12 test items" in usage
    assert "peaked at 412 MB" in usage and PEAK_MB == 412.4  # the ladder's planted figure, to whole MB
    assert f"| 412 | {rung['p50_ms']:.1f} | {rung['p95_ms']:.1f} |" in usage
    assert "| temperature | 0.00 | greedy" in usage and "| max_tokens | 32 |" in usage
    assert "| constrained decoding | on |" in usage  # as the package's task decodes, and its anchors were made
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
    usage = (classify["root"] / "usage.md").read_text()
    ids = re.findall(r"### Example \d: test item `([^`]+)`", usage)
    anchors = {a.id: a for a in classify["anchors"]}
    server = start_llama_server(classify["root"] / classify["gguf"], tmp_path / "server.log")
    try:
        base = server.url.removesuffix("/v1")
        curl = blocks(usage, "sh")[2].replace("http://127.0.0.1:8080", base)
        out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=120, check=True).stdout
        curl_text = json.loads(out)["choices"][0]["message"]["content"]
        python = blocks(usage, "python")[0].replace("http://127.0.0.1:8080", base)
        py_text = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=120,
                                 check=True).stdout.rstrip("\n")
    finally:
        stop_llama_server(server)
    from honed.evaluate.output import parse_output
    from honed.types import Response

    task = classify["task"]
    for text, i in ((curl_text, ids[1]), (py_text, ids[2])):
        parsed = parse_output(task, anchors[i].inputs, Response(text=text, finish_reason="stop"))
        assert parsed.answer == anchors[i].answer, (i, text)
        # the grammar the example carries is what made it a label: the random weights write none free
        assert text == anchors[i].answer and text in {*task.labels, task.none_label}
    assert all(r.answer is None for r in classify["base"].records)  # the free run: no label at all


def test_benchmarks_numbers_and_examples_come_from_the_runs(classify: dict[str, Any]) -> None:
    bench = (classify["root"] / "benchmarks.md").read_text()
    for s in BENCH_SECTIONS + ["## Confusion matrix"]:
        assert s in bench
    gate, base, tuned = classify["gate"], classify["base"], classify["tuned"]
    assert f"| {f3(gate['base']['value'])} | {ci3(gate['base']['ci'])} | {gate['base']['p95_ms']:.1f} | " \
           f"`{base.run_id}` |" in bench
    assert f"p = {gate['p_value']:.4f}" in bench
    # the ladder's row: the shipped run's figures, and the planted memory and cost
    rung = classify["ladder"]["rungs"][0]
    assert f"| {f3(rung['metric'])} | {ci3(rung['ci'])} | {rung['p50_ms']:.1f} | {rung['p95_ms']:.1f} | 412 | " \
           f"{COST_PER_1K} | 1.000 |" in bench
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


@pytest.mark.parametrize("kind", ["pick", "extract", "generate"])
def test_other_kinds_document_and_verify(kind: str, tmp_path_factory: pytest.TempPathFactory,
                                         tiny_model: Any) -> None:
    from honed.exporting.verify import verify

    opts: dict[str, Any] = {"n_eval": 4, "n_anchors": 2}  # pick and extract ship constrained, as they are served
    if kind == "generate":  # cannot be constrained: the 'base' run samples instead, the greedy one ships
        opts.update(n_eval=3, n_anchors=1, eval_opts={"base": {"temperature": 1.0}}, constrained=False)
    if kind == "extract":  # a schema's grammar is slow on a 49K vocabulary: two items; the free base writes no
        opts.update(n_eval=2, eval_opts={"base": {"max_tokens": 48}})  # JSON, cut at 48 tokens, not the task's 200
    built = shared_package(tmp_path_factory, tiny_model.gguf, kind, **opts)
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
    if kind != "generate":  # a generate task has no answer space: no such row
        assert "| constrained decoding | on |" in usage
    recorded = [a.answer for a in built["anchors"]]
    if kind == "pick":  # a candidate's number or NONE, under the grammar
        assert all(r == "NONE" or isinstance(r, int) for r in recorded), recorded
    if kind == "extract":
        assert '"properties"' in usage  # the schema it answers in
        body = json.loads(blocks(usage, "sh")[2].split(" -d '", 1)[1].removesuffix("'"))
        assert body["response_format"] == {"type": "json_object", "schema": built["task"].schema}
        # under the schema's grammar the random weights still close a schema-valid object on some items
        valid = [r for r in recorded if r is not None]
        assert valid
        for r in valid:
            jsonschema.validate(r, built["task"].schema)
    if kind == "generate":  # the greedy text itself is the answer that verify replays
        assert all(isinstance(r, str) and r for r in recorded), recorded
    result = verify(built["root"])
    assert result.passed, (result.files, result.problems, [(a.id, a.recorded, a.answer) for a in result.anchors])
    assert [a.recorded for a in result.anchors] == recorded and all(a.matches for a in result.anchors)


def test_base_model_without_chat_template_gets_plain_completion_examples(tmp_path: Path) -> None:
    """Gemma 3 270M base has no chat template: usage.md must show the plain prompt and the completion endpoint."""
    from honed.backends.llamacpp import LlamaCppBackend
    from honed.backends.models import resolve_gguf
    from honed.errors import ModelNotFound
    from honed.evaluate.runner import sampling_for
    from honed.exporting.docs import render_usage
    from honed.exporting.package import Acceptance, Manifest, Rung
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
