"""Warnings about training data that `honed data stats` prints and `tune` repeats before it trains.

Thresholds come from the seeds: below ~500 examples LoRA memorises (seed 004's V2 failure, 74 examples);
a class needs ~20 examples to be learnt at all; heavy imbalance is how seed 000's fine-tune learnt to answer
NONE to everything; and a completion longer than the generation budget is cut when served, so the model is
trained on an answer it can never give.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from honed.task.data import Item
from honed.task.prompt import build_answer
from honed.task.spec import Task

MIN_EXAMPLES = 500
MIN_PER_CLASS = 20
MAX_IMBALANCE = 10.0
"""Largest class / smallest class above which the data is called heavily imbalanced."""
CHARS_PER_TOKEN = 3.5
"""Estimate when no tokenizer is given: a little under English's ~4, since JSON answers tokenize densely."""

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class DataWarning:
    code: str
    """few_examples | small_class | empty_class | imbalance | long_completion"""
    message: str


def estimate_tokens(text: str) -> int:
    """A rough token count (no tokenizer needed)."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN)) if text else 0


def class_counts(task: Task, items: Sequence[Item]) -> Counter[str]:
    """Examples per class: classify labels (every label, even unseen), pick NONE vs PICK; empty otherwise."""
    if task.kind == "classify":
        counts = Counter({label: 0 for label in task.labels})
        counts.update(str(i.expected) for i in items)
        return counts
    if task.kind == "pick":
        counts = Counter({"NONE": 0, "PICK": 0})
        counts.update("NONE" if i.expected == task.none_label else "PICK" for i in items)
        return counts
    return Counter()


def data_warnings(
    task: Task,
    items: Sequence[Item],
    *,
    max_completion_tokens: int | None = None,
    count_tokens: TokenCounter | None = None,
    min_examples: int = MIN_EXAMPLES,
    min_per_class: int = MIN_PER_CLASS,
    max_imbalance: float = MAX_IMBALANCE,
) -> list[DataWarning]:
    """Warnings about `items` as training data (the train split). Empty list: nothing to warn about."""
    out: list[DataWarning] = []
    n = len(items)
    if n < min_examples:
        out.append(
            DataWarning(
                "few_examples",
                f"{n} training examples: fewer than ~{min_examples}, a LoRA "
                "fine-tune tends to memorise instead of generalise (seed 004); "
                "generate or harvest more, or keep the base model",
            )
        )
    counts = class_counts(task, items)
    empty = sorted(c for c, k in counts.items() if k == 0)
    if empty:
        out.append(
            DataWarning(
                "empty_class", f"no examples of {', '.join(empty)}: the model cannot learn what it never sees"
            )
        )
    small = sorted((k, c) for c, k in counts.items() if 0 < k < min_per_class)
    if small:
        shown = ", ".join(f"{c} ({k})" for k, c in small)
        out.append(DataWarning("small_class", f"classes under ~{min_per_class} examples: {shown}"))
    present = [k for k in counts.values() if k > 0]
    if len(present) >= 2 and max(present) / min(present) > max_imbalance:
        big = counts.most_common(1)[0]
        least = min((k, c) for c, k in counts.items() if k > 0)
        out.append(
            DataWarning(
                "imbalance",
                f"heavy imbalance: {big[0]} has {big[1]} examples, {least[1]} only "
                f"{least[0]} ({max(present) / min(present):.0f}x); a fine-tune drifts "
                "toward the big class (seed 000's NONE collapse): oversample the "
                "small classes or add data",
            )
        )
    budget = max_completion_tokens or task.max_tokens
    counter = count_tokens or estimate_tokens
    long = [(counter(build_answer(task, i.expected)), i.id) for i in items if i.expected is not None]
    long = sorted((t, i) for t, i in long if t > budget)
    if long:
        how = "" if count_tokens else " (estimated; pass a tokenizer for exact counts)"
        ids = ", ".join(f"{i} ({t})" for t, i in long[-5:][::-1])
        out.append(
            DataWarning(
                "long_completion",
                f"{len(long)} completion(s) longer than the {budget}-token "
                f"generation budget{how}, e.g. {ids}: served with that budget "
                "they would be cut; raise [generation] max_tokens or shorten "
                "them (tune skips them rather than truncate)",
            )
        )
    return out
