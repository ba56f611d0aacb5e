"""The task spec: a bad file names the file, the key and what was expected; all errors at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from honed.errors import DataError, TaskError
from honed.task.data import items_hash, load_items
from honed.task.prompt import build_messages, render_chat, render_plain
from honed.task.spec import load_task
from tests.conftest import CLASSIFY_ROWS, CLASSIFY_TOML, EXAMPLES, write_task

pytestmark = pytest.mark.unit


def test_loads_and_defaults(mini_task: Path) -> None:
    task = load_task(mini_task)
    assert task.kind == "classify"
    assert task.labels == ["billing", "shipping", "NONE"]
    assert task.max_tokens == 32 and task.primary_metric == "macro_f1"
    items = load_items(task, "test")
    assert [i.id for i in items] == ["a", "b", "c", "d"]
    assert items[0].inputs == {"text": "I was charged twice"} and items[0].expected == "billing"


def test_every_error_reported_at_once_with_file_and_key(tmp_path: Path) -> None:
    bad = CLASSIFY_TOML.replace('kind = "classify"', 'kind = "classify"\ncolour = "blue"').replace(
        'none_label = "NONE"', 'none_label = "NONE"\nlables = []')
    bad = bad.replace("[generation]", "")
    root = write_task(tmp_path / "bad", bad + '\n[generation]\nmax_tokens = -3\n')
    with pytest.raises(TaskError) as exc:
        load_task(root)
    msg = str(exc.value)
    assert str(root / "honed.toml") in msg
    assert "colour: unknown key" in msg
    assert "classify.lables: unknown key" in msg
    assert "generation.max_tokens" in msg and "greater than 0" in msg
    assert "3 errors" in msg


@pytest.mark.parametrize("mutate, expected", [
    (lambda s: s.replace('kind = "classify"', 'kind = "sort"'), "kind: Input should be 'classify'"),
    (lambda s: s.split("[classify]")[0], "needs a [classify] section"),
    (lambda s: s.replace('"shipping"]', '"shipping", "billing"]'), "labels must be unique"),
    (lambda s: s.replace('none_label = "NONE"', 'none_label = "billing"'), "must not also be in labels"),
    (lambda s: s.replace("{{ text }}", "{{ text }"), "prompt.template line 1: Jinja2 syntax error"),
    (lambda s: s + "\n[generate]\n", "also has [generate]"),
    (lambda s: s.replace('name = "mini"', 'name = "has space"'), "name: String should match pattern"),
])
def test_each_mistake_names_the_key(tmp_path: Path, mutate, expected: str) -> None:
    root = write_task(tmp_path / "t", mutate(CLASSIFY_TOML))
    with pytest.raises(TaskError, match=None) as exc:
        load_task(root)
    assert expected in str(exc.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    root = write_task(tmp_path / "t", "name = [unclosed")
    with pytest.raises(TaskError, match="not valid TOML"):
        load_task(root)
    with pytest.raises(TaskError, match="task file not found .*contains honed.toml"):
        load_task(tmp_path / "nowhere")


def test_generate_rule_regex_checked(tmp_path: Path) -> None:
    toml = """
name = "g"
kind = "generate"
[prompt]
template = "{{ text }}"
[generate]
rules = [{name = "sev", pattern = "^SEVERITY: (LOW|HIGH"}]
"""
    with pytest.raises(TaskError, match="rule 'sev': invalid regular expression"):
        load_task(write_task(tmp_path / "g", toml))


def test_extract_schema_must_be_valid(tmp_path: Path) -> None:
    toml = """
name = "x"
kind = "extract"
[prompt]
template = "{{ text }}"
[extract]
schema = {type = "objekt"}
"""
    with pytest.raises(TaskError, match="not a valid JSON Schema"):
        load_task(write_task(tmp_path / "x", toml))


def test_data_errors_name_file_line_and_field(tmp_path: Path) -> None:
    root = write_task(tmp_path / "d", CLASSIFY_TOML)
    task = load_task(root)
    (root / "test.jsonl").write_text('{"id": "a", "text": "x", "expected": "billing"}\n{"id": "b", "text": \n')
    with pytest.raises(DataError, match=r"test\.jsonl:2: not valid JSON"):
        load_items(task)
    (root / "test.jsonl").write_text('{"id": "a", "text": "x", "expected": "refund"}\n')
    with pytest.raises(DataError, match=r"test\.jsonl:1: field 'expected' = 'refund' is not one of"):
        load_items(task)
    (root / "test.jsonl").write_text('{"id": "a", "text": "x"}\n')
    with pytest.raises(DataError, match=r"test\.jsonl:1: missing field 'expected'"):
        load_items(task)
    (root / "test.jsonl").write_text('{"id": "a", "text": "x", "expected": "NONE"}\n' * 2)
    with pytest.raises(DataError, match=r"test\.jsonl:2: duplicate id 'a' \(first on line 1\)"):
        load_items(task)
    (root / "test.jsonl").unlink()
    with pytest.raises(DataError, match="data file for split 'test' not found"):
        load_items(task)
    with pytest.raises(TaskError, match=r"\[data\] has no `train` file"):
        load_items(task, "train")


def test_items_hash_is_content_not_order(mini_task: Path) -> None:
    task = load_task(mini_task)
    items = load_items(task)
    assert items_hash(items) == items_hash(list(reversed(items)))
    changed = write_task(mini_task.parent / "m2", CLASSIFY_TOML,
                         {"test": CLASSIFY_ROWS[:-1] + [{**CLASSIFY_ROWS[-1], "text": "Refund it"}]})
    assert items_hash(load_items(load_task(changed))) != items_hash(items)


def test_prompt_builder_renders_template_and_chat(mini_task: Path) -> None:
    task = load_task(mini_task)
    msgs = build_messages(task, {"text": "Where is it?"})
    assert [m.role for m in msgs] == ["system", "user"]
    assert msgs[1].content == "Message: Where is it?\nAnswer with one of: billing, shipping, or NONE."
    chatml = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    assert render_chat(msgs, chatml) == (
        "<|im_start|>system\nYou sort messages.<|im_end|>\n<|im_start|>user\nMessage: Where is it?\n"
        "Answer with one of: billing, shipping, or NONE.<|im_end|>\n<|im_start|>assistant\n")
    assert render_plain(msgs).endswith("Answer with one of: billing, shipping, or NONE.\n\nAnswer:")
    with pytest.raises(DataError, match="variable the item does not have"):
        build_messages(task, {"body": "x"})


def test_template_is_sandboxed(tmp_path: Path) -> None:
    toml = CLASSIFY_TOML.replace("Message: {{ text }}", "{{ text.__class__.__mro__[1].__subclasses__() }}")
    task = load_task(write_task(tmp_path / "s", toml))
    with pytest.raises(Exception, match="unsafe|not safely|access"):
        build_messages(task, {"text": "x"})


@pytest.mark.parametrize("kind", ["classify", "pick", "extract", "generate"])
def test_examples_load(kind: str) -> None:
    task = load_task(EXAMPLES / kind)
    assert task.kind == kind
    for split in ("train", "val", "test"):
        items = load_items(task, split)
        assert len(items) >= 10
        msgs = build_messages(task, items[0].inputs)
        texts = [v for v in items[0].inputs.values() if isinstance(v, str)]
        assert msgs[-1].role == "user" and texts  # the item's own text fields reach the prompt verbatim
        assert all(t in msgs[-1].content for t in texts), (split, msgs[-1].content)
