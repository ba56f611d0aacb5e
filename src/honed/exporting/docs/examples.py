"""usage.md's copy-paste examples: which test items to show, the exact prompt a packaged GGUF is served, and
three ways to send it (`ollama run`, `curl`, the `openai` client).

The prompt is rendered by THE prompt builder (`honed.task.prompt`) with the GGUF's own chat format
(`honed.task.chat.read_gguf`: llama.cpp with `vocab_only=True`, so the weights are not loaded and this costs ~0.1 s
even for a big rung). A GGUF without a chat template is a base model: it gets a plain completion prompt, and the
examples use the completion endpoints instead of chat.
"""

from __future__ import annotations

import json
from typing import Any

from honed.exporting.docs.markdown import fence
from honed.exporting.package import ANCHORS, Anchor, Package
from honed.task.chat import ChatFormat
from honed.task.data import load_items
from honed.task.prompt import build_answer, build_constraint, build_messages, decide_constrained
from honed.task.spec import Task

BASE_URL = "http://127.0.0.1:8080"
"""Where the examples expect the server (llama.cpp's and `honed serve`'s usual port)."""
HEREDOC = "HONED_PROMPT"
"""Delimiter of the quoted heredoc that feeds `ollama run` (quoted: the shell expands nothing inside)."""


def request_body(task: Task, inputs: dict[str, Any], tpl: ChatFormat, model: str) -> dict[str, Any]:
    """The OpenAI-compatible request body the package's numbers hold for (greedy unless the task says not)."""
    g = task.spec.generation
    body: dict[str, Any] = {"model": model}
    messages = build_messages(task, inputs)
    if tpl.is_chat:
        body["messages"] = [m.as_dict() for m in messages]
    else:
        body["prompt"] = tpl.render(messages)
        body["stop"] = list(tpl.stops)
    body.update({"temperature": g.temperature, "top_p": g.top_p, "max_tokens": task.max_tokens, "seed": g.seed})
    # llama.cpp server extensions, set to what the measurements used: llama_cpp.server defaults to a repeat
    # penalty of 1.1 (and top_k 40, min_p 0.05), which changes answers, even greedy ones
    body["repeat_penalty"] = 1.0
    if g.temperature > 0:
        body.update(top_k=0, min_p=0.0)
    if decide_constrained(task):
        constraint = build_constraint(task, inputs)
        if constraint.kind == "json_schema":
            body["response_format"] = {"type": "json_object", "schema": constraint.schema}
        else:
            from honed.backends.llamacpp import choice_grammar

            body["grammar"] = choice_grammar(constraint.choices)  # llama.cpp servers read `grammar`
    return body


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def ollama_example(task: Task, inputs: dict[str, Any], tpl: ChatFormat, ollama_model: str) -> str:
    """`ollama run` with the user message on stdin; Ollama adds the Modelfile's TEMPLATE and SYSTEM around it."""
    messages = build_messages(task, inputs)
    text = messages[-1].content if tpl.is_chat else tpl.render(messages)
    return f"ollama run {ollama_model} <<'{HEREDOC}'\n{text}\n{HEREDOC}"


def curl_example(task: Task, inputs: dict[str, Any], tpl: ChatFormat, model: str, base_url: str) -> str:
    endpoint = "chat/completions" if tpl.is_chat else "completions"
    body = json.dumps(request_body(task, inputs, tpl, model), ensure_ascii=False, indent=2)
    return (f"curl -s {base_url}/v1/{endpoint} -H 'Content-Type: application/json' -d {_shell_quote(body)}")


def py_literal(value: Any, level: int = 0) -> str:
    """Python source for a JSON-like value, laid out like `json.dumps(indent=4)`: unlike JSON, a schema's
    true/false/null must read as True/False/None. JSON string literals are valid Python string literals."""
    pad, end = "    " * (level + 1), "    " * level
    if isinstance(value, dict):
        if not value:
            return "{}"
        rows = [f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {py_literal(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(rows) + f",\n{end}}}"
    if isinstance(value, list):
        flat = [py_literal(v) for v in value]
        if all(not isinstance(v, (dict, list)) for v in value) and sum(map(len, flat)) < 80:
            return "[" + ", ".join(flat) + "]"
        return "[\n" + ",\n".join(pad + py_literal(v, level + 1) for v in value) + f",\n{end}]"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def python_example(task: Task, inputs: dict[str, Any], tpl: ChatFormat, model: str, base_url: str,
                   expected: Any) -> str:
    body = request_body(task, inputs, tpl, model)
    extra = {k: body.pop(k) for k in ("grammar", "repeat_penalty", "top_k", "min_p") if k in body}
    body["extra_body"] = extra  # not OpenAI parameters: the client sends them along untouched

    kwargs = ",\n".join(f"    {k}={py_literal(v, 1)}" for k, v in body.items())
    call, read = (("chat.completions", "choices[0].message.content") if tpl.is_chat
                  else ("completions", "choices[0].text"))
    return (
        "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{base_url}/v1", api_key="not-needed")\n'
        f"response = client.{call}.create(\n{kwargs},\n)\n"
        f"print(response.{read})  # expected: {build_answer(task, expected)}"
    )


def example_items(pkg: Package, task: Task, n: int = 3) -> list[Anchor]:
    """Three test items to show, from the anchors (which carry what the shipped rung answered) when present;
    different expected answers first, so the examples cover more than one class."""
    anchors = pkg.anchors() if (pkg.root / ANCHORS).is_file() else []
    if len(anchors) < n:  # topped up from the test set, without a recorded answer
        have = {a.id for a in anchors}
        anchors += [Anchor(i.id, i.inputs, i.expected, None) for i in load_items(task, "test") if i.id not in have]
    seen: set[str] = set()
    first, rest = [], []
    for a in anchors:
        key = json.dumps(a.expected, sort_keys=True, default=str)
        (rest if key in seen else first).append(a)
        seen.add(key)
    return (first + rest)[:n]


def _expected_text(task: Task, expected: Any) -> str:
    if expected is None:  # generate items may have no reference: the format rules judge them
        return "none recorded (the format rules in `task/honed.toml` judge the output)"
    return f"`{build_answer(task, expected)}`"


def examples_section(pkg: Package, task: Task, tpl: ChatFormat, gguf_file: str, ollama_model: str) -> list[str]:
    examples = example_items(pkg, task)
    out = ["## Examples", "",
           "Start a server on the recommended file first, in this folder (any one of):", "", "```sh",
           f"ollama create {ollama_model} -f Modelfile",
           f"llama-server -m {gguf_file} --port 8080",
           f"python -m llama_cpp.server --model {gguf_file} --port 8080",
           "honed serve .   # the OpenAI-compatible endpoint with validation; use the URL it prints",
           "```", ""]
    forms = [("`ollama run`", "sh", lambda a: ollama_example(task, a.inputs, tpl, ollama_model)),
             ("`curl` to the OpenAI-compatible server", "sh",
              lambda a: curl_example(task, a.inputs, tpl, gguf_file, BASE_URL)),
             ("Python, `openai` client", "python",
              lambda a: python_example(task, a.inputs, tpl, gguf_file, BASE_URL, a.expected))]
    for n, (anchor, (how, lang, make)) in enumerate(zip(examples, forms, strict=False), 1):
        prompt = tpl.render(build_messages(task, anchor.inputs))
        answered = (f" The recommended rung answered `{build_answer(task, anchor.answer)}` at export "
                    "(anchors.jsonl)." if anchor.answer is not None else "")
        out += [f"### Example {n}: test item `{anchor.id}`, {how}", "",
                "The exact prompt the model is served:", "", fence(prompt, "text"), "",
                fence(make(anchor), lang), "",
                f"Expected answer: {_expected_text(task, anchor.expected)}.{answered}", ""]
        if how == "`ollama run`" and task.prompt_system and tpl.is_chat:
            out[-1:-1] = ["`ollama run` sends only the user message: the task's system message must be the "
                          "Modelfile's SYSTEM for Ollama to see the prompt above.", ""]
    return out
