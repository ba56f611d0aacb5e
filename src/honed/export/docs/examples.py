"""usage.md's copy-paste examples: which test items to show, the exact prompt a packaged GGUF is served, and
three ways to send it (`ollama run`, `curl`, the `openai` client).

The prompt is rendered by THE prompt builder (`honed.task.prompt`) with the chat template stored in the GGUF
itself, read through llama.cpp with `vocab_only=True` (the weights are not loaded, so this costs ~0.1 s even
for a big rung). A GGUF without a chat template is a base model: it gets `render_plain`, and the examples use
the completion endpoints instead of chat.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.errors import MissingDependency
from honed.export.docs.markdown import fence
from honed.export.package import ANCHORS, Anchor, Package
from honed.task.data import load_items
from honed.task.prompt import (
    PLAIN_STOP,
    build_answer,
    build_constraint,
    build_messages,
    render_chat,
    render_plain,
)
from honed.task.spec import Task
from honed.types import Message

BASE_URL = "http://127.0.0.1:8080"
"""Where the examples expect the server (llama.cpp's and `honed serve`'s usual port)."""
HEREDOC = "HONED_PROMPT"
"""Delimiter of the quoted heredoc that feeds `ollama run` (quoted: the shell expands nothing inside)."""


@dataclass(frozen=True)
class ChatTemplate:
    """What a GGUF says about its prompt format."""

    template: str | None
    bos: str
    eos: str

    def render(self, messages: tuple[Message, ...]) -> str:
        """The exact text the model sees, as the llama.cpp backend renders it."""
        if self.template:
            return render_chat(messages, self.template, bos_token=self.bos, eos_token=self.eos)
        return render_plain(messages)


def read_chat_template(gguf: Path) -> ChatTemplate:
    """The chat template and BOS/EOS texts of a GGUF, read with llama.cpp's vocab-only loader."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependency("llama-cpp-python", extra="llamacpp", why="reading the GGUF's chat template") \
            from None
    llm = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    try:
        def text(token: int) -> str:
            return llm._model.token_get_text(token) if token >= 0 else ""

        return ChatTemplate(llm.metadata.get("tokenizer.chat_template"), text(llm.token_bos()),
                            text(llm.token_eos()))
    finally:
        llm.close()


def request_body(task: Task, inputs: dict[str, Any], tpl: ChatTemplate, model: str) -> dict[str, Any]:
    """The OpenAI-compatible request body the package's numbers hold for (greedy unless the task says not)."""
    g = task.spec.generation
    body: dict[str, Any] = {"model": model}
    messages = build_messages(task, inputs)
    if tpl.template:
        body["messages"] = [m.as_dict() for m in messages]
    else:
        body["prompt"] = render_plain(messages)
        body["stop"] = list(PLAIN_STOP)
    body.update({"temperature": g.temperature, "top_p": g.top_p, "max_tokens": task.max_tokens, "seed": g.seed})
    # llama.cpp server extensions, set to what the measurements used: llama_cpp.server defaults to a repeat
    # penalty of 1.1 (and top_k 40, min_p 0.05), which changes answers, even greedy ones
    body["repeat_penalty"] = 1.0
    if g.temperature > 0:
        body.update(top_k=0, min_p=0.0)
    if g.constrained and task.kind != "generate":
        constraint = build_constraint(task, inputs)
        if constraint.kind == "json_schema":
            body["response_format"] = {"type": "json_object", "schema": constraint.schema}
        else:
            from honed.backends.llamacpp import choice_grammar

            body["grammar"] = choice_grammar(constraint.choices)  # llama.cpp servers read `grammar`
    return body


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def ollama_example(task: Task, inputs: dict[str, Any], tpl: ChatTemplate, ollama_model: str) -> str:
    """`ollama run` with the user message on stdin; Ollama adds the Modelfile's TEMPLATE and SYSTEM around it."""
    messages = build_messages(task, inputs)
    text = messages[-1].content if tpl.template else render_plain(messages)
    return f"ollama run {ollama_model} <<'{HEREDOC}'\n{text}\n{HEREDOC}"


def curl_example(task: Task, inputs: dict[str, Any], tpl: ChatTemplate, model: str, base_url: str) -> str:
    endpoint = "chat/completions" if tpl.template else "completions"
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


def python_example(task: Task, inputs: dict[str, Any], tpl: ChatTemplate, model: str, base_url: str,
                   expected: Any) -> str:
    body = request_body(task, inputs, tpl, model)
    extra = {k: body.pop(k) for k in ("grammar", "repeat_penalty", "top_k", "min_p") if k in body}
    body["extra_body"] = extra  # not OpenAI parameters: the client sends them along untouched

    kwargs = ",\n".join(f"    {k}={py_literal(v, 1)}" for k, v in body.items())
    call, read = (("chat.completions", "choices[0].message.content") if tpl.template
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


def examples_section(pkg: Package, task: Task, tpl: Any, gguf_file: str, ollama_model: str) -> list[str]:
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
        if how == "`ollama run`" and task.prompt_system and tpl.template:
            out[-1:-1] = ["`ollama run` sends only the user message: the task's system message must be the "
                          "Modelfile's SYSTEM for Ollama to see the prompt above.", ""]
    return out
