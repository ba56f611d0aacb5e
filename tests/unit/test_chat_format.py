"""One chat format and one decision of `constrained`: `honed.task.chat.ChatFormat` renders, ends and tokenizes a
turn for every stage, and `src/` reads a GGUF's chat template in exactly one place and decides `constrained` in
exactly one (issue 14: six readers drifted, and the gate decoded free where the rungs decoded constrained)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from honed.task.chat import ChatFormat, TemplateMismatch
from honed.task.prompt import PLAIN_STOP
from honed.types import Message

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src" / "honed"
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
MSGS = (Message("system", "Sort it."), Message("user", "refund please"))


def _words(text: str) -> list[int]:
    """A stand-in tokenizer: one id per whitespace-separated word (its length)."""
    return [len(w) for w in text.split()]


def _sources() -> dict[str, str]:
    return {str(p.relative_to(SRC)): p.read_text(encoding="utf-8") for p in sorted(SRC.rglob("*.py"))}


def test_a_chat_turn_is_the_template_s_text_up_to_the_terminator() -> None:
    fmt = ChatFormat(CHATML, eos_token="<|im_end|>", eos_token_id=2)
    prompt, completion = fmt.render_turn(MSGS, "billing")
    assert prompt == ("<|im_start|>system\nSort it.<|im_end|>\n<|im_start|>user\nrefund please<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert completion == "billing<|im_end|>"  # the newline after the terminator is the next turn's
    assert fmt.render(MSGS) == prompt and fmt.stops == () and fmt.prompt_format == "chat_template"


def test_a_base_model_gets_the_plain_prompt_its_answer_after_a_space_and_eos() -> None:
    fmt = ChatFormat(None, bos_token="<s>", eos_token="</s>", eos_token_id=2)
    prompt, completion = fmt.render_turn(MSGS, "billing")
    assert prompt == "Sort it.\n\nrefund please\n\nAnswer:"
    assert completion == " billing</s>" and fmt.stops == PLAIN_STOP and fmt.prompt_format == "plain_completion"
    chat = ChatFormat(CHATML, eos_token="<|im_end|>")
    assert chat.plain().render(MSGS) == prompt  # a chat model asked for plain completion text


def test_a_template_that_rewrites_the_prompt_once_answered_is_refused() -> None:
    shifty = CHATML.replace("{% if add_generation_prompt %}", "{% if add_generation_prompt %}<think>")
    with pytest.raises(TemplateMismatch, match="not a prefix"):
        ChatFormat(shifty, eos_token="<|im_end|>").render_turn(MSGS, "billing")


def test_bos_is_added_only_where_the_model_wants_one_and_the_text_lacks_it() -> None:
    wants = ChatFormat(CHATML, bos_token="<s>", bos_token_id=1, encode=_words)
    assert wants.tokenize("ab cde") == [1, 2, 3]
    assert wants.tokenize("<s> ab") == [3, 2]  # already there: not twice
    assert ChatFormat(CHATML, bos_token="<s>", encode=_words).tokenize("ab cde") == [2, 3]  # the model wants none
    assert wants.encode_text("ab cde") == [2, 3]  # a completion's ids never get a BOS
    with pytest.raises(TypeError, match="no tokenizer"):
        ChatFormat(CHATML).tokenize("ab")


def test_src_reads_a_gguf_chat_template_in_one_place() -> None:
    key = re.compile(r"""["']tokenizer\.chat_template["']""")
    readers = [f for f, text in _sources().items() if key.search(text)]
    assert readers == ["task/chat.py"]
    bos_eos = [f for f, text in _sources().items() if re.search(r"\.token_(bos|eos)\(\)", text)]
    assert bos_eos == ["task/chat.py"]
    plain = [f for f, text in _sources().items() if re.search(r"render_plain\(|render_chat\(", text)]
    assert sorted(plain) == ["task/chat.py", "task/prompt.py"]  # the chat-or-plain branch is written once


def test_src_decides_constrained_in_one_place() -> None:
    deciders, settings_reads = [], []
    for f, text in _sources().items():
        tree = ast.parse(text)
        deciders += [f for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "decide_constrained"]
        for n in ast.walk(tree):
            # the task's own setting, `task.spec.generation.constrained` or through an alias of the generation table
            if isinstance(n, ast.Attribute) and n.attr == "constrained" and (
                    (isinstance(n.value, ast.Attribute) and n.value.attr == "generation")
                    or (isinstance(n.value, ast.Name) and n.value.id in ("g", "gen", "generation"))):
                settings_reads.append(f)
    assert deciders == ["task/prompt.py"]
    assert settings_reads == ["task/prompt.py"]
