"""A tiny evaluator for the Go templates that Ollama Modelfiles carry (their TEMPLATE instruction).

honed must render a Modelfile's TEMPLATE in Python to prove that Ollama will build the same tokens as training
did (the template round trip, `honed.exporting.template`). Go's `text/template` is a whole language; honed
generates only a small part of it, so this evaluator supports exactly that part and refuses everything else
by name, rather than guess what Ollama would do:

    text                         copied as is
    {{ .System }} {{ .Prompt }} {{ .Response }}
    {{ if .X }} ... {{ else }} ... {{ end }}   (a variable's truth: non-empty)
    {{- ... -}}                  Go's whitespace trimming on either side

`.Response` follows Ollama's rule: when generating, the text after it is not sent to the model
(`render(..., cut_at_response=True)`); when rendering a whole conversation it is the assistant's answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from honed.errors import UserError

VARIABLES = ("System", "Prompt", "Response")
_ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.DOTALL)


class UnsupportedTemplate(UserError):
    """A Modelfile TEMPLATE uses a Go template construct honed cannot check."""


@dataclass
class _Var:
    name: str


@dataclass
class _If:
    name: str
    then: list[object] = field(default_factory=list)
    other: list[object] = field(default_factory=list)


def _where(source: str, pos: int) -> str:
    line = source.count("\n", 0, pos) + 1
    return f"line {line}"


def parse(source: str, *, origin: str = "TEMPLATE") -> list[object]:
    """Go template text → a small tree (str | _Var | _If). Anything outside the supported part is refused."""
    pieces: list[object] = []  # text or (kind, arg, pos)
    pos = 0
    for m in _ACTION.finditer(source):
        text = source[pos:m.start()]
        if m.group(1):  # "{{-": trim the whitespace before
            text = text.rstrip()
        if pieces and isinstance(pieces[-1], tuple) and pieces[-1][3]:  # previous "-}}": trim after it
            text = text.lstrip()
        pieces.append(text)
        body = m.group(2).strip()
        pieces.append(_classify(body, source, m.start(), origin) + (bool(m.group(3)),))
        pos = m.end()
    tail = source[pos:]
    if pieces and isinstance(pieces[-1], tuple) and pieces[-1][3]:
        tail = tail.lstrip()
    pieces.append(tail)
    if "{{" in tail or "}}" in tail:
        raise UnsupportedTemplate(f"{origin}: unbalanced '{{{{' or '}}}}' near the end of the template")

    root: list[object] = []
    stack: list[tuple[_If, bool]] = []  # (node, in the else branch)

    def sink() -> list[object]:
        if not stack:
            return root
        node, in_else = stack[-1]
        return node.other if in_else else node.then

    for piece in pieces:
        if isinstance(piece, str):
            if piece:
                sink().append(piece)
            continue
        kind, arg, at, _trim = piece
        if kind == "var":
            sink().append(_Var(arg))
        elif kind == "if":
            node = _If(arg)
            sink().append(node)
            stack.append((node, False))
        elif kind == "else":
            if not stack or stack[-1][1]:
                raise UnsupportedTemplate(f"{origin} {_where(source, at)}: {{{{ else }}}} without an open {{{{ if }}}}")
            stack[-1] = (stack[-1][0], True)
        else:  # end
            if not stack:
                raise UnsupportedTemplate(f"{origin} {_where(source, at)}: {{{{ end }}}} without an open {{{{ if }}}}")
            stack.pop()
    if stack:
        raise UnsupportedTemplate(f"{origin}: {{{{ if .{stack[-1][0].name} }}}} is never closed with {{{{ end }}}}")
    return root


def _classify(body: str, source: str, at: int, origin: str) -> tuple[str, str, int]:
    if body.startswith("/*"):
        raise UnsupportedTemplate(f"{origin} {_where(source, at)}: comments are not supported")
    m = re.fullmatch(r"\.([A-Za-z_]\w*)", body)
    if m and m.group(1) in VARIABLES:
        return ("var", m.group(1), at)
    m = re.fullmatch(r"if\s+\.([A-Za-z_]\w*)", body)
    if m and m.group(1) in VARIABLES:
        return ("if", m.group(1), at)
    if body in ("else", "end"):
        return (body, "", at)
    raise UnsupportedTemplate(
        f"{origin} {_where(source, at)}: {{{{ {body} }}}} is outside what honed can check (it supports "
        f"{{{{ .System }}}}, {{{{ .Prompt }}}}, {{{{ .Response }}}}, {{{{ if .X }}}}/{{{{ else }}}}/{{{{ end }}}} "
        "and '-' trimming); write the TEMPLATE with those, or let `honed export` generate the Modelfile")


class _Cut(Exception):
    """Raised at `.Response` when rendering a generation prompt: what came before is the prompt."""


def render(source: str | list[object], values: dict[str, str], *, cut_at_response: bool = False,
           origin: str = "TEMPLATE") -> str:
    """Render with `values` (missing variables are empty, as in Ollama). `cut_at_response`: stop before
    `.Response`, as Ollama does when it asks the model to generate."""
    tree = parse(source, origin=origin) if isinstance(source, str) else source
    out: list[str] = []

    def walk(nodes: list[object]) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _Var):
                if node.name == "Response" and cut_at_response:
                    raise _Cut
                out.append(values.get(node.name, ""))
            else:
                assert isinstance(node, _If)
                walk(node.then if values.get(node.name) else node.other)

    try:
        walk(tree)
    except _Cut:
        pass
    return "".join(out)
