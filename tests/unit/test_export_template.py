"""The Go-template evaluator, the Modelfile writer/reader and the family table, without a model."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from honed.errors import UserError
from honed.exporting import gotemplate
from honed.exporting.modelfile import (
    FAMILIES,
    detect_family,
    generate_modelfile,
    num_ctx_for,
    ollama_create,
    parse_modelfile,
    render_modelfile,
)

pytestmark = pytest.mark.unit

SMOL_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                 "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                 "{% endif %}")


def test_variables_and_if_else() -> None:
    src = "{{ if .System }}S:{{ .System }}|{{ else }}no system|{{ end }}U:{{ .Prompt }}"
    assert gotemplate.render(src, {"System": "be brief", "Prompt": "hi"}) == "S:be brief|U:hi"
    assert gotemplate.render(src, {"Prompt": "hi"}) == "no system|U:hi"


def test_response_cut_is_ollamas_generation_prompt() -> None:
    src = "<a>{{ .Prompt }}</a><b>{{ .Response }}</b>\n"
    assert gotemplate.render(src, {"Prompt": "q"}, cut_at_response=True) == "<a>q</a><b>"
    assert gotemplate.render(src, {"Prompt": "q", "Response": "r"}) == "<a>q</a><b>r</b>\n"


def test_trim_markers_follow_go() -> None:
    assert gotemplate.render("a  \n {{- .Prompt -}} \n  b", {"Prompt": "X"}) == "aXb"
    assert gotemplate.render("a {{ .Prompt }} b", {"Prompt": "X"}) == "a X b"


@pytest.mark.parametrize("src, needle", [
    ("{{ range .Messages }}{{ .Content }}{{ end }}", "range .Messages"),
    ("{{ if eq .Role \"user\" }}x{{ end }}", 'if eq .Role "user"'),
    ("{{ .Tools }}", ".Tools"),
    ("{{ if .System }}x", "never closed"),
    ("x{{ end }}", "without an open"),
    ("{{/* note */}}", "comments"),
])
def test_unsupported_constructs_are_refused_by_name(src: str, needle: str) -> None:
    with pytest.raises(gotemplate.UnsupportedTemplate) as exc:
        gotemplate.render(src, {})
    assert needle in str(exc.value)


def _jinja(template: str, messages: list[dict], add_generation_prompt: bool) -> str:
    return jinja2.Environment().from_string(template).render(messages=messages,
                                                             add_generation_prompt=add_generation_prompt)


def test_chatml_family_renders_what_the_smollm2_template_renders() -> None:
    fam = detect_family(SMOL_TEMPLATE)
    assert fam.name == "chatml"
    default = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    msgs = [{"role": "user", "content": "Classify: my card was charged twice"}]
    want_prompt = _jinja(SMOL_TEMPLATE, msgs, True)
    got = gotemplate.render(fam.template, {"System": default, "Prompt": msgs[0]["content"]}, cut_at_response=True)
    assert got == want_prompt
    full = _jinja(SMOL_TEMPLATE, msgs + [{"role": "assistant", "content": "billing"}], False)
    assert gotemplate.render(fam.template, {"System": default, "Prompt": msgs[0]["content"],
                                            "Response": "billing"}) == full


def test_family_table() -> None:
    assert detect_family(None).name == "plain"
    assert detect_family("{{ '<start_of_turn>user\n' }}").name == "gemma"
    qwen3 = detect_family("<|im_start|>{% if enable_thinking is defined and enable_thinking is false %}"
                          "<think>\n\n</think>\n\n{% endif %}")
    assert qwen3.thinking_off and "<think>\n\n</think>\n\n{{ .Response }}" in qwen3.template
    with pytest.raises(UserError, match="--modelfile"):
        detect_family("### Instruction:\n{{ messages }}\n### Response:\n")
    gemma = gotemplate.render(FAMILIES["gemma"].template, {"System": "S", "Prompt": "P"}, cut_at_response=True)
    assert gemma == "<start_of_turn>user\nS\n\nP<end_of_turn>\n<start_of_turn>model\n"


def test_modelfile_written_and_read_back_identically(tmp_path: Path) -> None:
    mf = generate_modelfile(FAMILIES["chatml"], from_="./m-Q8_0.gguf", eos_text="<|im_end|>", system='Say "hi" politely.',
                            temperature=0.0, num_ctx=1024, num_predict=32)
    assert mf.stops == ["<|im_end|>", "<|im_start|>"]
    path = tmp_path / "Modelfile"
    path.write_text(render_modelfile(mf, "a comment\nover two lines"))
    back = parse_modelfile(path)
    assert (back.from_, back.template, back.system, back.parameters) == (mf.from_, mf.template, mf.system,
                                                                        mf.parameters)
    assert back.param("num_ctx") == "1024" and back.param("temperature") == "0"


def test_plain_family_puts_the_eos_in_template_and_stops() -> None:
    mf = generate_modelfile(FAMILIES["plain"], from_="x.gguf", eos_text="<eos>", system=None, temperature=0.0,
                            num_ctx=512, num_predict=16)
    assert mf.stops[0] == "<eos>" and "\n\n" in mf.stops
    assert gotemplate.render(mf.template, {"Prompt": "Q", "Response": " A"}) == "Q\n\nAnswer: A<eos>"


@pytest.mark.parametrize("text, message", [
    ("TEMPLATE x\n", "no FROM"),
    ("FROM x\n", "no TEMPLATE"),
    ('FROM x\nTEMPLATE """abc\n', "never closed"),
    ("FROM x\nTEMPLATE y\nPARAMETR stop x\n", ":3: expected one of"),
    ("FROM x\nTEMPLATE y\nPARAMETER\n", ":3: PARAMETER needs a name and a value"),
    ("FROM\nTEMPLATE y\n", ":1: FROM needs a value"),
])
def test_bad_modelfiles_are_refused_with_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "Modelfile"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        parse_modelfile(path)


def test_num_ctx_rounds_up_to_a_power_of_two() -> None:
    assert num_ctx_for([100, 200], 32) == 512
    assert num_ctx_for([600], 32) == 1024
    assert num_ctx_for([], 4000) == 4096


def test_ollama_create_reports_when_ollama_is_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ollama here
    outcome = ollama_create("m", tmp_path / "Modelfile")
    assert outcome["ran"] is False and outcome["created"] is False
    assert outcome["how"].startswith("ollama create m -f Modelfile")
