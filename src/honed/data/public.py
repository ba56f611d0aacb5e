"""Public data sets → honed task folders.

The data sets are read at run time from a folder the caller names (`honed data public NAME --from DIR`;
nothing is copied into the project, and honed knows no default place for them): `DIR/banking77/` (intent
classification, turned into a classify task with held-out intents as NONE) and `DIR/restaurant8k/` (slot filling,
turned into an extract task). Both are CC BY 4.0, PolyAI (github.com/PolyAI-LDN/task-specific-datasets).
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from honed.errors import DataError

VAL_FRACTION = 0.2
RESTAURANT_SLOTS = ("people", "time", "date", "first_name", "last_name")
SOURCE_FILES = {
    "banking77": ("categories.json", "train.csv", "test.csv"),
    "restaurant8k": ("train_0.json", "test.json"),
}
"""The files each data set is built from, inside the data folder's `banking77/` and `restaurant8k/`."""
_REPO = "github.com/PolyAI-LDN/task-specific-datasets"
_ORIGIN = f"{_REPO} (PolyAI), licence CC BY 4.0"

_BANKING_PROMPT = """\
Classify this message from a bank customer into one of these intents:
{% for label in labels %}
- {{ label }}
{% endfor %}
If none of them fits, answer {{ none_label }}.

Message: {{ text }}

Answer with only the intent name or {{ none_label }}."""
_BANKING_TUNED = "Bank customer message: {{ text }}"

_RESTAURANT_PROMPT = """\
Extract the restaurant booking details stated in the user's message.
Keys: people, time, date, first_name, last_name. Include only the keys the message states, \
copying each value exactly as written. Answer {} when it states none.
{% if requested_slots %}
The assistant had just asked for: {{ requested_slots | join(", ") }}.
{% endif %}

Message: {{ text }}

Answer with only the JSON object."""
_RESTAURANT_TUNED = """\
{% if requested_slots %}(asked for: {{ requested_slots | join(", ") }}) {% endif %}Booking message: {{ text }}"""


def expected_files(dataset: str) -> str:
    """What the data folder must hold for `dataset`, as an error message says it."""
    return ", ".join(f"{dataset}/{name}" for name in SOURCE_FILES[dataset])


def check_data_dir(data_dir: Path, dataset: str) -> Path:
    """`data_dir` if it holds every file `dataset` is built from, else a DataError naming the first one missing
    and everything the folder should hold."""
    data_dir = Path(data_dir).expanduser()
    wanted = expected_files(dataset)
    if not data_dir.is_dir():
        raise DataError(
            f"{data_dir}: not a folder; the data folder (--from DIR) must hold {wanted}, as laid out in {_REPO}"
        )
    for name in SOURCE_FILES[dataset]:
        path = data_dir / dataset / name
        if not path.is_file():
            raise DataError(
                f"{path}: not found; the {dataset} data set is built from {wanted} inside the data folder "
                f"(--from DIR, here {data_dir})"
            )
    return data_dir


def _write_jsonl(path: Path, items: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")


def _write_splits(out_dir: Path, splits: dict[str, list[tuple[dict[str, Any], Any]]]) -> None:
    for split, rows in splits.items():
        items = [
            {"id": f"{split}-{i:04d}", **inputs, "expected": exp} for i, (inputs, exp) in enumerate(rows, 1)
        ]
        _write_jsonl(out_dir / "data" / f"{split}.jsonl", items)


def _write_toml(out_dir: Path, name: str, kind: str, description: str, template: str, section: str,
                tuned: str, tuned_system: str) -> None:
    # tuned_template: what a model fine-tuned on the task is trained and served with (the input alone: the
    # answer space is learned from the examples, not re-read in every prompt); tuned_system: one line of system
    # message, so that a chat template's default one (SmolLM2's: ~18 tokens) is not paid for in every example
    (out_dir / "honed.toml").write_text(
        f"name = {json.dumps(name)}\nkind = {json.dumps(kind)}\ndescription = {json.dumps(description)}\n\n"
        '[data]\ntrain = "data/train.jsonl"\nval = "data/val.jsonl"\ntest = "data/test.jsonl"\n\n'
        f"[prompt]\ntemplate = '''\n{template}'''\ntuned_template = '''{tuned}'''\n"
        f"tuned_system = {json.dumps(tuned_system)}\n\n{section}",
        encoding="utf-8",
    )


def _spread(total: int, n: int) -> list[int]:
    """`total` split into `n` near-equal counts, larger ones first."""
    q, r = divmod(total, n)
    return [q + (i < r) for i in range(n)]


def _take(rng: random.Random, pool: list[str], k: int, what: str) -> list[str]:
    if len(pool) < k:
        raise DataError(
            f"banking77: intent {what!r} has only {len(pool)} examples, {k} requested; "
            "lower the per-label sizes"
        )
    return rng.sample(pool, k)


def banking77_label(intent: str) -> str:
    """The label for a Banking77 intent: its name, less the stray "?" the source has on a few names."""
    return intent.rstrip("?")


def banking77_none(
    out_dir: Path,
    *,
    data_dir: Path,
    n_labels: int = 10,
    n_none: int = 4,
    train_per_label: int = 30,
    test_per_label: int = 15,
    seed: int = 0,
) -> Path:
    """Build a classify task from Banking77 with out-of-scope messages labelled NONE.

    `n_labels + n_none` intents are drawn by `seed`; the first `n_labels` are kept as labels, the other
    `n_none` are held out and their messages become "NONE". From train.csv: `train_per_label` messages per
    kept label and `2 * train_per_label` NONE messages spread over the held-out intents, 20% of each group
    going to val. From test.csv: `test_per_label` per kept label and `2 * test_per_label` NONE.
    `data_dir` is the folder that holds `banking77/` (categories.json, train.csv, test.csv). Returns `out_dir`.
    """
    source = check_data_dir(data_dir, "banking77") / "banking77"
    categories: list[str] = json.loads(
        (source / "categories.json").read_text("utf-8")
    )
    if n_labels < 2 or n_none < 1 or n_labels + n_none > len(categories):
        raise DataError(
            f"banking77: need n_labels >= 2, n_none >= 1 and n_labels + n_none <= {len(categories)}; "
            f"got n_labels={n_labels}, n_none={n_none}"
        )
    rng = random.Random(seed)
    chosen = rng.sample(sorted(categories), n_labels + n_none)
    kept, held_out = sorted(chosen[:n_labels]), sorted(chosen[n_labels:])

    def by_intent(name: str) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = defaultdict(list)
        with (source / name).open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                groups[row["category"]].append(row["text"].strip())
        return groups

    train_src, test_src = by_intent("train.csv"), by_intent("test.csv")
    splits: dict[str, list[tuple[dict[str, Any], Any]]] = {"train": [], "val": [], "test": []}

    def add(texts: list[str], label: str, split_val: bool) -> None:
        n_val = round(len(texts) * VAL_FRACTION) if split_val else 0
        for i, text in enumerate(texts):
            splits["val" if i < n_val else ("train" if split_val else "test")].append(({"text": text}, label))

    for intent in kept:
        add(_take(rng, train_src[intent], train_per_label, intent), banking77_label(intent), True)
        add(_take(rng, test_src[intent], test_per_label, intent), banking77_label(intent), False)
    none_train, none_test = _spread(2 * train_per_label, n_none), _spread(2 * test_per_label, n_none)
    for intent, k_train, k_test in zip(held_out, none_train, none_test, strict=True):
        add(_take(rng, train_src[intent], k_train, intent), "NONE", True)
        add(_take(rng, test_src[intent], k_test, intent), "NONE", False)
    for rows in splits.values():
        rng.shuffle(rows)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_splits(out_dir, splits)
    labels = [banking77_label(intent) for intent in kept]
    label_list = ", ".join(json.dumps(label) for label in labels)
    _write_toml(
        out_dir,
        "banking77-none",
        "classify",
        f"Banking77: {n_labels} intents; {n_none} held-out intents are out of scope (NONE).",
        _BANKING_PROMPT,
        # answers are one of the intents or NONE, as `honed serve` decodes them
        f'[classify]\nlabels = [{label_list}]\nnone_label = "NONE"\n\n[generation]\nconstrained = true\n',
        _BANKING_TUNED,
        "Answer with the intent.",
    )
    (out_dir / "SOURCE.txt").write_text(
        f"Banking77 (banking77/train.csv, test.csv), {_ORIGIN}.\n"
        f"Built by honed.data.public.banking77_none(n_labels={n_labels}, n_none={n_none}, "
        f"train_per_label={train_per_label}, test_per_label={test_per_label}, seed={seed}).\n"
        f"labels (intents): {', '.join(kept)}\nheld_out_as_NONE (intents): {', '.join(held_out)}\n"
        f"train/val from train.csv ({VAL_FRACTION:.0%} of each group to val), test from test.csv.\n",
        encoding="utf-8",
    )
    return out_dir


def _restaurant_rows(path: Path) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(inputs, expected) per source example; exact repeats of (text, requested slots) kept once."""
    rows: list[tuple[dict[str, Any], dict[str, str]]] = []
    seen: set[str] = set()
    for ex in json.loads(path.read_text(encoding="utf-8")):
        text: str = ex["userInput"]["text"]
        # A few source contexts repeat a slot (["first_name", "last_name", "last_name"]): keep each once.
        requested = list(dict.fromkeys(ex.get("context", {}).get("requestedSlots", [])))
        spans = {lab["slot"]: lab["valueSpan"] for lab in ex.get("labels", [])}
        expected = {
            slot: text[span.get("startIndex", 0) : span["endIndex"]].strip() for slot, span in spans.items()
        }
        key = json.dumps([text, requested])
        if key in seen or not all(expected.values()):
            continue
        seen.add(key)
        rows.append(({"text": text, "requested_slots": requested}, expected))
    return rows


def _stratified(rng: random.Random, rows: list[Any], size: int, what: str) -> tuple[list[Any], list[Any]]:
    """`size` rows keeping the source's share of empty answers; returned as (empty, non-empty) samples."""
    if size > len(rows):
        raise DataError(f"restaurant8k: {what} has {len(rows)} usable examples, {size} requested")
    empty = [r for r in rows if not r[1]]
    full = [r for r in rows if r[1]]
    n_empty = round(size * len(empty) / len(rows)) if rows else 0
    return rng.sample(empty, n_empty), rng.sample(full, size - n_empty)


def restaurant8k(
    out_dir: Path,
    *,
    data_dir: Path,
    train_size: int = 400,
    test_size: int = 150,
    seed: int = 0,
) -> Path:
    """Build an extract task from Restaurant-8k slot filling: message (+ requested slots) → {slot: value}.

    `train_size` examples are sampled from train_0.json (20% of them go to val) and `test_size` from
    test.json, keeping the source's share of messages with no slot (`{}`). Train examples whose text occurs
    in the sampled test are left out. Values are the labelled spans of the text, whitespace-stripped.
    `data_dir` is the folder that holds `restaurant8k/` (train_0.json, test.json). Returns `out_dir`.
    """
    source = check_data_dir(data_dir, "restaurant8k") / "restaurant8k"
    rng = random.Random(seed)
    empty, full = _stratified(rng, _restaurant_rows(source / "test.json"), test_size, "test.json")
    test = empty + full
    test_texts = {inputs["text"] for inputs, _ in test}
    pool = [r for r in _restaurant_rows(source / "train_0.json") if r[0]["text"] not in test_texts]
    empty, full = _stratified(rng, pool, train_size, "train_0.json")
    n_val_empty = round(len(empty) * VAL_FRACTION)
    n_val_full = round(train_size * VAL_FRACTION) - n_val_empty
    splits = {
        "train": empty[n_val_empty:] + full[n_val_full:],
        "val": empty[:n_val_empty] + full[:n_val_full],
        "test": test,
    }
    for rows in splits.values():
        rng.shuffle(rows)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_splits(out_dir, splits)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {slot: {"type": "string", "minLength": 1} for slot in RESTAURANT_SLOTS},
        "additionalProperties": False,
    }
    (out_dir / "schema.json").write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    _write_toml(
        out_dir,
        "restaurant8k",
        "extract",
        "Restaurant-8k: extract the booking slots a message states.",
        _RESTAURANT_PROMPT,
        '[extract]\nschema_file = "schema.json"\n\n[generation]\nmax_tokens = 64\n',
        _RESTAURANT_TUNED,
        "Answer with the slots as JSON.",
    )
    (out_dir / "SOURCE.txt").write_text(
        f"Restaurant-8k (restaurant8k/train_0.json, test.json), {_ORIGIN}.\n"
        f"Built by honed.data.public.restaurant8k(train_size={train_size}, test_size={test_size}, "
        f"seed={seed}).\n"
        f"train/val from train_0.json ({VAL_FRACTION:.0%} to val), test from test.json; share of {{}} "
        "answers kept as in the source; requested slots de-duplicated; values are stripped text spans.\n",
        encoding="utf-8",
    )
    return out_dir
