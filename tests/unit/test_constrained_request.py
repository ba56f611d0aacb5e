"""One request path: `build_request` refuses a constraint the backend cannot honour, before any answer is asked
(a run that says "constrained" and decodes free would compare unlike with like); `decide_constrained` is the one
place that decides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from honed.backends.scripted import ScriptedBackend
from honed.errors import TaskError
from honed.task.data import Item
from honed.task.prompt import build_request, decide_constrained
from honed.task.spec import load_task
from honed.types import Constraint, Sampling
from tests.conftest import write_task

pytestmark = pytest.mark.unit


def test_a_constraint_the_backend_cannot_honour_is_refused(tmp_path: Path) -> None:
    from honed.backends.scripted import ScriptedBackend

    task_dir = write_task(tmp_path / "x", """
name = "x"
kind = "extract"
[data]
test = "test.jsonl"
[prompt]
template = "{{ text }}"
[extract]
schema = {type = "object", properties = {entities = {type = "array"}}}
[generation]
constrained = true
""", {"test": [{"id": "a", "text": "web runs on k8s", "expected": {"entities": []}}]})
    task = load_task(task_dir)
    item = Item("a", {"text": "web runs on k8s"}, {"entities": []})
    scripted = ScriptedBackend(script=lambda request: "{}")
    assert not scripted.honours(Constraint("json_schema", schema={})) and scripted.honours(None)
    with pytest.raises(TaskError, match="cannot constrain decoding to a JSON schema.*--free"):
        build_request(task, item, Sampling(), backend=scripted)
    assert build_request(task, item, Sampling(), constrained=False, backend=scripted).constraint is None
    assert decide_constrained(task) is True and decide_constrained(task, False) is False


def test_a_generate_task_is_never_constrained(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path / "g", """
name = "g"
kind = "generate"
[data]
test = "test.jsonl"
[prompt]
template = "{{ text }}"
[generation]
constrained = true
""", {"test": [{"id": "a", "text": "say hi", "expected": "hi"}]}))
    assert decide_constrained(task) is False and decide_constrained(task, True) is False
    req = build_request(task, Item("a", {"text": "say hi"}, "hi"), Sampling(), backend=ScriptedBackend())
    assert req.constraint is None
