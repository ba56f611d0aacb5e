"""The Llama 3, Mistral and Phi-3 Modelfile families render, as Ollama would, the text the models' own chat
templates render (the templates are written here after the published ones: no hub is reachable); their
detection, and the refusals where no fixed TEMPLATE can be right."""

from __future__ import annotations

import pytest

from honed.errors import UserError
from honed.exporting import gotemplate
from honed.exporting.modelfile import FAMILIES, detect_family, generate_modelfile
from honed.task.prompt import render_chat
from honed.types import Message

pytestmark = pytest.mark.unit

LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
          "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
          "{% endif %}")
MISTRAL_V3 = ("{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
              "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
              "{{- bos_token }}{%- for message in loop_messages %}{%- if message['role'] == 'user' %}"
              "{%- if loop.last and system_message is defined %}"
              "{{- '[INST] ' + system_message + '\n\n' + message['content'] + '[/INST]' }}"
              "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
              "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content']|trim + eos_token}}"
              "{%- endif %}{%- endfor %}")
MISTRAL_V1 = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
              "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
              "{{ message['content'] + eos_token}}{% endif %}{% endfor %}")
PHI3 = ("{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
        "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
        "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}"
        "{% endif %}")
# (family, template, bos, eos, system message: None where the family's templates take none in a trained turn)
CASES = [("llama3", LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "You sort tickets."),
         ("mistral", MISTRAL_V3, "<s>", "</s>", None),
         ("mistral-v1", MISTRAL_V1, "<s>", "</s>", None),
         ("phi3", PHI3, "", "<|end|>", "You sort tickets.")]


@pytest.mark.parametrize(("name", "template", "bos", "eos", "system"), CASES)
def test_family_renders_what_its_chat_template_renders(name: str, template: str, bos: str, eos: str,
                                                       system: str | None) -> None:
    assert detect_family(template).name == name
    msgs = ([Message("system", system)] if system else []) + [Message("user", "Message: my card was charged")]
    prompt = render_chat(msgs, template, bos_token=bos, eos_token=eos)
    full = render_chat([*msgs, Message("assistant", "billing")], template, bos_token=bos, eos_token=eos,
                       add_generation_prompt=False)
    answer = full[len(prompt):]
    answer = answer[: answer.index(eos) + len(eos)]  # honed trains up to the terminator
    values = {"System": system or "", "Prompt": msgs[-1].content}
    go_prompt = gotemplate.render(FAMILIES[name].template, values, cut_at_response=True)
    go_full = gotemplate.render(FAMILIES[name].template, {**values, "Response": "billing"})
    assert prompt == bos + go_prompt  # the BOS text is the token llama.cpp and Ollama add
    assert go_full[len(go_prompt):].startswith(answer)
    mf = generate_modelfile(FAMILIES[name], from_="m.gguf", eos_text=eos, system=system, temperature=0.0,
                            num_ctx=512, num_predict=8)
    assert mf.stops[0] == eos


def test_mistral_v3_answer_space_is_only_written_with_an_answer() -> None:
    tpl = FAMILIES["mistral"].template
    assert gotemplate.render(tpl, {"Prompt": "q"}, cut_at_response=True) == "[INST] q[/INST]"
    assert gotemplate.render(tpl, {"Prompt": "q", "Response": "a"}) == "[INST] q[/INST] a</s>"
    # the control: the v1 layout differs by one space on each side, which the round trip would refuse
    assert gotemplate.render(FAMILIES["mistral-v1"].template, {"Prompt": "q", "Response": "a"}) == "[INST] q [/INST]a</s>"


def test_dated_llama_templates_and_unknown_families_are_refused() -> None:
    dated = LLAMA3.replace("{% set loop_messages", "{{- 'Today Date: ' + strftime_now('%d %b %Y') }}{% set loop_messages")
    with pytest.raises(UserError, match="writes a date into every system turn.*--modelfile"):
        detect_family(dated)
    with pytest.raises(UserError, match="Llama 3, Mistral and Phi-3.*--modelfile"):
        detect_family("### Instruction:\n{{ messages[0]['content'] }}\n### Response:\n")
