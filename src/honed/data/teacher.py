"""What the teacher is asked, and how its text becomes inputs and answers.

Two kinds of request:
- *writing an input*: honed's own short prompt, few-shot from seed examples or grounded in a document chunk;
- *labelling an input*: the task's own prompt, built by THE prompt builder (`honed.task.prompt`) and read by
  `parse_output`, exactly as evaluation and serving build and read it, so the labels are answers to the
  prompt the student will be trained and served on.
Responses are cached in the store like evaluation's, so a re-run (or a resumed one) asks nothing twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from honed.backends.base import Backend
from honed.data.dedup import item_text
from honed.data.filters import Candidate
from honed.errors import DataError
from honed.evaluate.output import extract_json, parse_output
from honed.store import Store, request_key
from honed.task.data import Item
from honed.task.prompt import build_request
from honed.task.spec import Task
from honed.types import Message, Request, Response, Sampling

_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PLACEHOLDER = re.compile(r"\[[^\]]*\]|<[^>]*>|\{[^}]*\}")  # "[Your message]", "<text>", "{input}"


class Teacher:
    """A backend behind the response cache, one request at a time so that progress can be shown."""

    def __init__(self, backend: Backend, store: Store, advance: Callable[[int], None] | None = None) -> None:
        self.backend = backend
        self.store = store
        self.advance = advance or (lambda n: None)
        self.asked = 0
        self.cached = 0

    def ask(self, requests: Sequence[Request]) -> list[Response]:
        out = []
        for req in requests:
            key, phash, settings = request_key(self.backend.cache_identity(), req)
            resp = self.store.get(key)
            if resp is None:
                resp = self.backend.generate([req])[0]
                self.store.put(key, self.backend.cache_identity(), phash, settings, resp)
                self.asked += 1
            else:
                self.cached += 1
            out.append(resp)
            self.advance(1)
        return out


def chunk_documents(paths: Sequence[Path], max_chars: int = 400) -> list[tuple[str, str]]:
    """(origin, chunk) pairs: paragraphs of each text file, long ones cut at sentence ends to ≤ max_chars."""
    chunks: list[tuple[str, str]] = []
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"{path}: source document not found") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); give plain-text documents") from None
        n = 0
        for para in re.split(r"\n\s*\n", text):
            para = " ".join(para.split())
            piece = ""
            for sentence in _SENTENCE_END.split(para) if para else []:
                if piece and len(piece) + 1 + len(sentence) > max_chars:
                    n += 1
                    chunks.append((f"{path.name}#{n}", piece))
                    piece = sentence
                else:
                    piece = f"{piece} {sentence}".strip()
            if piece:
                n += 1
                chunks.append((f"{path.name}#{n}", piece))
        if n == 0:
            raise DataError(f"{path}: the document is empty")
    return chunks


def input_request(
    task: Task, fields: Sequence[str], examples: Sequence[Item], sampling: Sampling, chunk: str | None = None
) -> Request:
    """Ask for one new input: a line of text for one-field tasks, a JSON object otherwise. Not a task prompt (no
    answer is asked, so there is no task template or constraint to apply): the teacher's answers to the task go
    through `build_request`, in `labelling_requests`."""
    what = f"Task: {task.spec.description}\n" if task.spec.description else ""
    if len(fields) == 1:
        f = fields[0]
        shown = "\n".join(f"{i}. {item_text(e.inputs)}" for i, e in enumerate(examples, 1))
        if chunk is None:
            body = (
                f"{what}Examples of the {f} this task receives:\n{shown}\n\nWrite one more {f} of the same "
                f"kind, different from the examples. Reply with the {f} only."
            )
        else:
            style = f"\nExamples of the style:\n{shown}\n" if examples else ""
            body = (
                f'Source text:\n"""\n{chunk}\n"""\n\n{what}Write one {f} for this task that uses only facts '
                f"stated in the source text.{style}\nReply with the {f} only."
            )
        stop: tuple[str, ...] = ("\n",)
    else:
        shown = "\n".join(json.dumps({f: e.inputs[f] for f in fields}, ensure_ascii=False) for e in examples)
        body = (
            f"{what}Examples of this task's inputs, one JSON object per line:\n{shown}\n\n"
            "Write one more input "
            f"of the same kind, different from the examples, as one JSON object with the keys "
            f"{', '.join(fields)}. Reply with the JSON object only."
        )
        stop = ("\n\n",)
    return Request(
        messages=(Message("user", body),),
        sampling=Sampling(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            stop=stop,
        ),
    )


def parse_input(
    fields: Sequence[str], response: Response, types: dict[str, type] | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """(inputs, None) or (None, why the teacher's text is not a usable input)."""
    text = (response.text or "").strip()
    if response.finish_reason == "error":
        return None, f"teacher error: {response.error}"
    if response.finish_reason == "length":
        return None, "cut at max_tokens"
    if len(fields) == 1:
        line = next((ln for ln in text.splitlines() if ln.strip()), "")
        line = _NUMBERING.sub("", line)
        line = re.sub(rf"^\s*{re.escape(fields[0])}\s*:\s*", "", line, flags=re.IGNORECASE)
        line = line.strip().strip("\"'“”").strip()
        if not line:
            return None, "empty"
        if line.endswith(":"):
            return None, "not an input: an introduction ending in ':'"
        if _PLACEHOLDER.fullmatch(line):
            return None, "not an input: a placeholder"
        return {fields[0]: line}, None
    try:
        value = extract_json(text)
    except ValueError:
        return None, "not JSON"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    missing = [f for f in fields if f not in value]
    if missing:
        return None, f"missing fields: {missing}"
    for f, want in (types or {}).items():
        if f in value and not isinstance(value[f], want):
            return None, f"wrong type: {f} is {type(value[f]).__name__}, expected {want.__name__}"
    return {f: value[f] for f in fields}, None


def labelling_requests(
    task: Task,
    cand: Candidate,
    k: int,
    temperature: float,
    seed: int,
    constrained: bool,
    feedback: tuple[str, str] | None = None,
) -> list[Request]:
    """k requests for the task's answer to a candidate's input, by the task's own prompt builder.

    With `feedback` = (previous answer text, rejection reason), the conversation continues with the rejected
    answer and the reason, for one round of repair.
    """
    g = task.spec.generation
    item = Item(id=cand.id, inputs=cand.inputs or {})
    out = []
    for j in range(k):
        sampling = Sampling(
            max_tokens=task.max_tokens,
            temperature=temperature if k > 1 else 0.0,
            top_p=g.top_p,
            seed=seed + j,
            think=g.think,
        )
        turns: tuple[Message, ...] = ()
        if feedback is not None:
            previous, reason = feedback
            turns = (
                Message("assistant", previous),
                Message(
                    "user",
                    f"That answer was rejected ({reason}). Answer again, following the "
                    "instructions exactly; use only values that appear in the input.",
                ),
            )
        out.append(build_request(task, item, sampling, constrained=constrained, follow_up=turns))
    return out


def read_answers(task: Task, cand: Candidate, responses: Sequence[Response]) -> None:
    """Parse each response with the evaluator's parser, into the candidate's answers and causes."""
    cand.answers, cand.causes, cand.texts = [], [], []
    for resp in responses:
        parsed = parse_output(task, cand.inputs or {}, resp)
        cand.answers.append(parsed.answer)
        cand.causes.append(parsed.cause)
        cand.texts.append(resp.text)
