"""The Ollama Modelfile: generated from a small table of chat-template families, parsed back for checking, and
handed to `ollama create` when Ollama is installed.

The TEMPLATE is the part that breaks exports (gibberish or endless output): honed writes it from the family of
the GGUF's own chat template, and `honed.exporting.template` then proves it renders the same tokens as training.
Stops: the training turn terminator (what the tuned model learned to emit after its answer) comes first.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed.errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    template: str
    """Go template; `{eos}` is replaced by the model's end-of-sequence text (plain completion only)."""
    stops: tuple[str, ...]
    """PARAMETER stop values; `{eos}` as above."""
    thinking_off: bool = False
    """A thinking family (Qwen3-style): the template closes an empty think block, so the model answers at once."""


_CHATML = ("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
           "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
           "<|im_start|>assistant\n")
FAMILIES: dict[str, Family] = {
    "chatml": Family("chatml", _CHATML + "{{ .Response }}<|im_end|>\n", ("<|im_end|>", "<|im_start|>")),
    # Qwen3 and kin think unless the assistant turn opens with an empty think block (their chat template's
    # enable_thinking=False does exactly this); Ollama passes the template through, so it is written here.
    "chatml-think": Family("chatml-think", _CHATML + "<think>\n\n</think>\n\n{{ .Response }}<|im_end|>\n",
                           ("<|im_end|>", "<|im_start|>"), thinking_off=True),
    # Gemma has no system role: its template folds the system text into the first user turn.
    "gemma": Family("gemma", "<start_of_turn>user\n{{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}"
                    "<end_of_turn>\n<start_of_turn>model\n{{ .Response }}<end_of_turn>\n", ("<end_of_turn>",)),
    # Llama 3 (Meta-Llama-3-*-Instruct and kin): header turns ended by <|eot_id|>; the BOS the template writes as
    # text is the BOS llama.cpp and Ollama add as a token, so the TEMPLATE leaves it out.
    "llama3": Family("llama3", "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>"
                     "{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>"
                     "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>",
                     ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>")),
    # Mistral v0.3 and later ([INST] q[/INST], the answer after a space): the space belongs to the answer, so
    # it is written only with a response and the generation prompt ends at [/INST], as training's does. Their
    # templates put a system message in the last user turn only; honed folds it the same way.
    "mistral": Family("mistral", "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST]"
                      "{{ if .Response }} {{ .Response }}</s>{{ end }}", ("</s>", "[INST]")),
    # Mistral v0.1/v0.2 ([INST] q [/INST]answer</s>): no system role in their templates.
    "mistral-v1": Family("mistral-v1", "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }} [/INST]"
                         "{{ .Response }}</s>", ("</s>", "[INST]")),
    # Phi-3 / Phi-3.5: <|system|> / <|user|> / <|assistant|> turns ended by <|end|>.
    "phi3": Family("phi3", "{{ if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}{{ if .Prompt }}<|user|>\n"
                   "{{ .Prompt }}<|end|>\n{{ end }}<|assistant|>\n{{ .Response }}<|end|>\n",
                   ("<|end|>", "<|endoftext|>", "<|user|>", "<|assistant|>")),
    # A base model without a chat template: honed.task.prompt.render_plain's layout, answer after "Answer:".
    "plain": Family("plain", "{{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}\n\nAnswer:{{ .Response }}{eos}",
                    ("{eos}", "\n\n", "\nQuestion:", "\nInput:")),
}


def detect_family(chat_template: str | None) -> Family:
    """The family of a GGUF's chat template (None: a base model, plain completion)."""
    if not chat_template:
        return FAMILIES["plain"]
    if "<|im_start|>" in chat_template:
        thinking = "<think>" in chat_template or "enable_thinking" in chat_template
        return FAMILIES["chatml-think" if thinking else "chatml"]
    if "<start_of_turn>" in chat_template:
        return FAMILIES["gemma"]
    if "<|start_header_id|>" in chat_template:
        if "Today Date" in chat_template:
            raise UserError("this Llama 3.1+ chat template writes a date into every system turn (3.2 and later: "
                            "today's date), so no fixed Modelfile TEMPLATE renders what training rendered; write "
                            "one by hand and pass it with `--modelfile FILE` — the template round trip will check it")
        return FAMILIES["llama3"]
    if "[INST]" in chat_template:
        return FAMILIES["mistral-v1" if "' [/INST]'" in chat_template or '" [/INST]"' in chat_template
                        else "mistral"]
    if "<|assistant|>" in chat_template and "<|end|>" in chat_template:
        return FAMILIES["phi3"]
    raise UserError("honed has no Modelfile template for this model's chat template family (it knows ChatML, "
                    "Gemma, Llama 3, Mistral and Phi-3 turns and plain completion); write one and pass it with "
                    "`--modelfile FILE` — the template round trip will check it")


@dataclass
class Modelfile:
    from_: str
    template: str
    system: str | None = None
    parameters: list[tuple[str, str]] = field(default_factory=list)
    source: str = "generated"

    @property
    def stops(self) -> list[str]:
        return [v for k, v in self.parameters if k == "stop"]

    def param(self, key: str) -> str | None:
        return next((v for k, v in self.parameters if k == key), None)


def _quote_block(text: str, what: str) -> str:
    if '"""' in text or text.endswith('"'):
        raise UserError(f'the Modelfile {what} contains """ or ends with ", which a Modelfile """ block cannot '
                        "hold; reword it")
    return f'"""{text}"""'


def render_modelfile(mf: Modelfile, comment: str = "") -> str:
    """Modelfile text. Parameter values go through JSON quoting, which Ollama reads back the same way."""
    lines = [f"# {c}" for c in comment.splitlines() if c] + [f"FROM {mf.from_}", f"TEMPLATE {_quote_block(mf.template, 'TEMPLATE')}"]
    if mf.system:
        lines.append(f"SYSTEM {_quote_block(mf.system, 'SYSTEM')}")
    for key, value in mf.parameters:
        lines.append(f"PARAMETER {key} {json.dumps(value, ensure_ascii=False) if key == 'stop' else value}")
    return "\n".join(lines) + "\n"


_INSTRUCTIONS = ("FROM", "TEMPLATE", "SYSTEM", "PARAMETER", "ADAPTER", "LICENSE", "MESSAGE", "REQUIRES")


def _value(text: str, pos: int, path: Path, line_of: Any) -> tuple[str, int]:
    """One Modelfile value starting at `pos`: \"\"\"block\"\"\", "quoted" (JSON escapes) or bare to end of line."""
    if text.startswith('"""', pos):
        end = text.find('"""', pos + 3)
        if end < 0:
            raise UserError(f'{path}:{line_of(pos)}: a """ block is never closed')
        return text[pos + 3:end], end + 3
    eol = text.find("\n", pos)
    eol = len(text) if eol < 0 else eol
    raw = text[pos:eol].strip()
    if raw.startswith('"'):
        try:
            return str(json.loads(raw)), eol
        except json.JSONDecodeError:
            raise UserError(f"{path}:{line_of(pos)}: bad quoted value {raw!r}") from None
    return raw, eol


def parse_modelfile(path: Path) -> Modelfile:
    """Read a Modelfile (FROM, TEMPLATE, SYSTEM, PARAMETER; ADAPTER/LICENSE/MESSAGE are read and ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: Modelfile not found") from None

    def line_of(p: int) -> int:
        return text.count("\n", 0, p) + 1

    fields: dict[str, str] = {}
    params: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = re.compile(r"[ \t\r\n]*(#[^\n]*)?").match(text, pos)
        assert m is not None
        if m.group(1):
            pos = m.end()
            continue
        pos = m.end()
        if pos >= len(text):
            break
        word = re.compile(r"([A-Za-z]+)(?![A-Za-z])[ \t]*").match(text, pos)
        if not word or word.group(1).upper() not in _INSTRUCTIONS:
            got = text[pos:text.find("\n", pos) if "\n" in text[pos:] else len(text)]
            raise UserError(f"{path}:{line_of(pos)}: expected one of {', '.join(_INSTRUCTIONS)}, got {got[:40]!r}")
        instr = word.group(1).upper()
        pos = word.end()
        if instr == "PARAMETER":
            kv = re.compile(r"(\w+)[ \t]+").match(text, pos)
            if not kv:
                raise UserError(f"{path}:{line_of(pos)}: PARAMETER needs a name and a value")
            value, pos = _value(text, kv.end(), path, line_of)
            params.append((kv.group(1), value))
        else:
            value, pos = _value(text, pos, path, line_of)
            if not value.strip() and instr in ("FROM", "TEMPLATE"):
                raise UserError(f"{path}:{line_of(pos)}: {instr} needs a value")
            fields[instr] = value
    if "FROM" not in fields:
        raise UserError(f"{path}: no FROM line")
    if "TEMPLATE" not in fields:
        raise UserError(f"{path}: no TEMPLATE: without one Ollama guesses the prompt format, which honed cannot "
                        "check; add the template")
    return Modelfile(fields["FROM"], fields["TEMPLATE"], fields.get("SYSTEM"), params, source=str(path))


def generate_modelfile(family: Family, *, from_: str, eos_text: str, system: str | None, temperature: float,
                       num_ctx: int, num_predict: int) -> Modelfile:
    """The Modelfile for a family: template, stops (the training terminator first), sampling and context."""
    stops: list[str] = []
    for s in family.stops:
        s = s.replace("{eos}", eos_text)
        if s and s not in stops:
            stops.append(s)
    params = [("stop", s) for s in stops] + [("temperature", f"{temperature:g}"), ("num_ctx", str(num_ctx)),
                                             ("num_predict", str(num_predict))]
    return Modelfile(from_, family.template.replace("{eos}", eos_text), system, params)


def num_ctx_for(prompt_tokens: list[int], max_tokens: int) -> int:
    """The context the task needs: its longest prompt plus the answer budget, rounded up to a power of two
    (at least 512) so a slightly longer input still fits."""
    need = (max(prompt_tokens) if prompt_tokens else 0) + max_tokens
    ctx = 512
    while ctx < need:
        ctx *= 2
    return ctx


def ollama_create(name: str, modelfile: Path, *, timeout_s: float = 600) -> dict[str, Any]:
    """`ollama create NAME -f Modelfile` when Ollama is on PATH; the outcome, never an exception."""
    exe = shutil.which("ollama")
    how = f"ollama create {name} -f {modelfile.name}  (run inside the package folder)"
    if exe is None:
        return {"ran": False, "created": False, "name": name, "reason": "ollama is not on PATH", "how": how}
    try:
        proc = subprocess.run([exe, "create", name, "-f", str(modelfile)], cwd=modelfile.parent,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ran": True, "created": False, "name": name, "reason": str(exc), "how": how}
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
    return {"ran": True, "created": proc.returncode == 0, "name": name, "returncode": proc.returncode,
            "output": tail, "how": how}
