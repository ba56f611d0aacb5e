"""The task: its spec (`honed.toml`), its data, and the one prompt builder."""

from honed.task.data import Item, load_items
from honed.task.prompt import build_answer, build_messages, build_request, render_chat, render_plain
from honed.task.spec import Task, TaskSpec, load_task

__all__ = [
    "Item",
    "Task",
    "TaskSpec",
    "build_answer",
    "build_messages",
    "build_request",
    "load_items",
    "load_task",
    "render_chat",
    "render_plain",
]
