"""The template round trip: the tokens the tuned model was trained on must be the tokens every exported form
of it will be fed, and its turn must end on a token every form stops at.

The most reported failure of peers' exporters is gibberish or endless output after export; both come from a
prompt format or a stop token that differs between training and serving. For each anchor conversation
(prompt + expected answer) honed builds three token sequences and requires them equal:

1. **training** — `honed.train.dataset.render_completion` and the chat format of the base's transformers
   tokenizer (`honed.task.chat.from_tokenizer`), the very code `honed tune` trained with;
2. **GGUF** — the exported file's own chat format (`honed.task.chat.from_llama`, from its metadata), rendered by
   honed's prompt builder and tokenized by llama.cpp (for F16 and every quantized rung);
3. **Modelfile** — the Modelfile's TEMPLATE (a Go template, `honed.exporting.gotemplate`) rendered as Ollama
   would, tokenized by llama.cpp with the GGUF's own BOS rule.

Stops: the training terminator (the last token of every training completion) must be an end-of-generation
token of the GGUF (llama.cpp stops there) and a `PARAMETER stop` of the Modelfile (Ollama stops there); any
other stop must be one the family uses or another end-of-generation token. Otherwise `TemplateRoundTripError`,
with a readable diff: the first differing token and both texts around it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.errors import UserError
from honed.exporting import gotemplate
from honed.exporting.modelfile import Modelfile
from honed.task.chat import ChatFormat, from_llama, from_tokenizer, gguf_vocab
from honed.task.data import Item
from honed.task.prompt import build_messages
from honed.task.spec import Task
from honed.train.dataset import render_completion


class TemplateRoundTripError(UserError):
    """Training, the exported GGUF and the Modelfile disagree on tokens or stop tokens."""


@dataclass
class Side:
    name: str
    prompt: str
    completion: str
    prompt_ids: list[int]
    completion_ids: list[int]

    @property
    def text(self) -> str:
        return self.prompt + self.completion

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids


def training_tokenizer(base: str) -> Any:
    """The tokenizer `honed tune` trained with: `honed.train.loading.load_base`'s, without loading weights."""
    from transformers import AutoTokenizer

    from honed.backends.checkpoint import dequantized_checkpoint
    from honed.backends.models import resolve_gguf

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(base).expanduser()
    if folder.is_dir() and (folder / "config.json").exists():
        return AutoTokenizer.from_pretrained(folder)
    return AutoTokenizer.from_pretrained(dequantized_checkpoint(resolve_gguf(base)), local_files_only=True)


def training_side(task: Task, item: Item, tokenizer: Any) -> tuple[Side, ChatFormat]:
    tpl = from_tokenizer(tokenizer)
    prompt, completion = render_completion(task, item.inputs, _expected(item), tpl)
    return Side("training", prompt, completion, tpl.tokenize(prompt), tpl.encode_text(completion)), tpl


def _expected(item: Item) -> Any:
    return item.expected if item.expected is not None else ""


class GgufVocab:
    """A GGUF's tokenizer and chat template through llama.cpp (vocab only: no weights, ~0.2 s)."""

    def __init__(self, path: Path) -> None:
        import llama_cpp

        self.path = path
        self._lib = llama_cpp
        self._open = gguf_vocab(path, why="the template round trip")
        self.llm = self._open.__enter__()
        self.format = from_llama(self.llm, f"gguf {path.name}")
        self.template = self.format.chat_template
        self.eos_id, self.eot_id = self.format.eos_token_id, self.llm._model.token_eot()
        self.eos = self.format.eos_token

    def text_of(self, token: int) -> str:
        return self.llm._model.token_get_text(token) if token >= 0 else ""

    def is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self.llm._model.vocab, token))

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        """add_bos=True adds BOS only where the GGUF's add_bos_token says so (as llama.cpp and Ollama do)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def detokenize(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids, special=True).decode("utf-8", errors="replace")

    def close(self) -> None:
        self._open.__exit__(None, None, None)


def gguf_side(task: Task, item: Item, vocab: GgufVocab) -> Side:
    fmt = vocab.format
    prompt, completion = render_completion(task, item.inputs, _expected(item), fmt)
    return Side(f"GGUF {vocab.path.name}", prompt, completion, fmt.tokenize(prompt), fmt.encode_text(completion))


def modelfile_side(task: Task, item: Item, mf: Modelfile, vocab: GgufVocab, terminator: str) -> Side:
    """Render the Modelfile's TEMPLATE as Ollama does for these messages: a system message fills `.System`
    (else the Modelfile's SYSTEM does), the user message `.Prompt`, the answer `.Response`."""
    tree = gotemplate.parse(mf.template, origin=f"{mf.source} TEMPLATE")
    messages = build_messages(task, item.inputs)
    system = next((m.content for m in messages if m.role == "system"), mf.system or "")
    user = next(m.content for m in messages if m.role == "user")
    from honed.task.prompt import build_answer

    answer = build_answer(task, _expected(item))
    if not vocab.template:
        answer = " " + answer  # plain completion: the answer follows "Answer:" after a space, as in training
    values = {"System": system, "Prompt": user}
    prompt = gotemplate.render(tree, values, cut_at_response=True)
    full = gotemplate.render(tree, {**values, "Response": answer})
    completion = full.removeprefix(prompt)
    cut = completion.find(terminator, len(answer)) if terminator else -1
    if cut >= 0:
        completion = completion[: cut + len(terminator)]  # what follows the terminator is the next turn
    return Side("Modelfile TEMPLATE", prompt, completion, vocab.tokenize(prompt, add_bos=True),
                vocab.tokenize(completion, add_bos=False))


def _diff(item: Item, a: Side, b: Side, vocab: GgufVocab) -> str | None:
    """None when equal; else the first differing token and both texts around it."""
    # the BOS a template writes as text (Llama 3, Mistral) is the BOS token llama.cpp and Ollama add: the ids agree
    lead = vocab.text_of(a.ids[0]) if a.ids else ""
    if a.ids == b.ids and a.text.removeprefix(lead) == b.text.removeprefix(lead):
        return None
    ai, bi = a.ids, b.ids
    n = next((i for i, (x, y) in enumerate(zip(ai, bi)) if x != y), min(len(ai), len(bi)))
    lo = max(0, n - 6)

    def around(ids: list[int]) -> str:
        return repr(vocab.detokenize(ids[lo:n + 6]))

    where = "in the prompt" if n < max(len(a.prompt_ids), len(b.prompt_ids)) else "in the answer/terminator"
    return (f"item {item.id}: {a.name} and {b.name} differ at token {n} {where} "
            f"({len(ai)} vs {len(bi)} tokens)\n"
            f"  {a.name:<28} ids {ai[lo:n + 6]}  text {around(ai)}\n"
            f"  {b.name:<28} ids {bi[lo:n + 6]}  text {around(bi)}")


def check_stops(mf: Modelfile | None, vocab: GgufVocab, terminator: str, terminator_id: int,
                family_stops: tuple[str, ...]) -> list[str]:
    """Problems with stop tokens (empty when they match)."""
    problems = []
    ids = vocab.tokenize(terminator, add_bos=False) if terminator else []
    if ids != [terminator_id]:
        problems.append(f"the training terminator {terminator!r} (id {terminator_id}) is {ids} in "
                        f"{vocab.path.name}'s vocabulary")
    elif not vocab.is_eog(terminator_id):
        problems.append(f"the training terminator {terminator!r} (id {terminator_id}) is not an end-of-generation "
                        f"token of {vocab.path.name} (EOS {vocab.eos!r}, EOT {vocab.text_of(vocab.eot_id)!r}): "
                        "llama.cpp would generate past the answer (endless output)")
    if mf is None:
        return problems
    stops = mf.stops
    if terminator not in stops:
        problems.append(f"the Modelfile's PARAMETER stop values {stops} lack the training terminator "
                        f"{terminator!r}: Ollama would run past the answer (endless output)")
    allowed = set(family_stops) | {vocab.eos, vocab.text_of(vocab.eot_id)}
    for s in stops:
        if s in allowed or s == terminator:
            continue
        sid = vocab.tokenize(s, add_bos=False)
        if not (len(sid) == 1 and vocab.is_eog(sid[0])):
            problems.append(f"PARAMETER stop {s!r} is neither the training terminator nor an end-of-generation "
                            "token: it could cut answers short")
    return problems


def round_trip(task: Task, items: list[Item], tokenizer: Any, ggufs: list[Path], modelfile: Modelfile | None
               ) -> dict[str, Any]:
    """Check training vs every GGUF vs the Modelfile on `items`; raises `TemplateRoundTripError` with the diff.

    Returns what was checked (for the package manifest)."""
    if not items:
        raise UserError("the template round trip needs at least one test item")
    train = [training_side(task, it, tokenizer) for it in items]
    tpl = train[0][1]
    terminator, term_id = tpl.eos_token, tpl.eos_token_id
    for side, _ in train:
        if not side.completion_ids or side.completion_ids[-1] != term_id:
            raise TemplateRoundTripError(f"the training completion of {side.prompt[-40:]!r} does not end with the "
                                         f"terminator {terminator!r}")
    from honed.exporting.modelfile import detect_family

    problems: list[str] = []
    checked: dict[str, Any] = {"items": [it.id for it in items], "terminator": terminator,
                               "terminator_id": term_id, "ggufs": [], "modelfile": None}
    for k, path in enumerate(ggufs):
        vocab = GgufVocab(path)
        try:
            try:
                family_stops = detect_family(vocab.template).stops
            except UserError:  # a family honed cannot generate for: a user Modelfile may still be right
                family_stops = ()
            for it, (tside, _) in zip(items, train):
                d = _diff(it, tside, gguf_side(task, it, vocab), vocab)
                if d:
                    problems.append(d)
                    break
            problems += check_stops(None, vocab, terminator, term_id, family_stops)
            checked["ggufs"].append(path.name)
            if modelfile is not None and k == 0:  # the Modelfile's template is the same for every rung
                for it, (tside, _) in zip(items, train):
                    d = _diff(it, tside, modelfile_side(task, it, modelfile, vocab, terminator), vocab)
                    if d:
                        problems.append(d)
                        break
                problems += check_stops(modelfile, vocab, terminator, term_id, family_stops)
                checked["modelfile"] = {"source": modelfile.source, "stops": modelfile.stops}
        finally:
            vocab.close()
    if problems:
        raise TemplateRoundTripError(
            "template round trip FAILED — the exported model would not see what it was trained on "
            "(gibberish or endless output); export refused:\n" + "\n".join(f"- {p}" for p in problems))
    checked["passed"] = True
    return checked
