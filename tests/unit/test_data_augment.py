"""Entity swaps (honed.data.augment): names swapped in the sentence and everywhere in the answer, within a kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from honed.data.augment import swap_entities
from honed.task.data import Item
from honed.task.spec import load_task
from tests.conftest import write_task

pytestmark = pytest.mark.unit

TOML = """
name = "graph"
kind = "extract"
[data]
train = "train.jsonl"
[prompt]
template = "{{ sentence }}"
[extract]
schema = {type = "object"}
entities_key = "entities"
relationships_key = "relationships"
"""


def _item(i: str, sentence: str, ents: list[tuple[str, str]], rels: list[tuple[str, str, str]]) -> Item:
    return Item(id=i, inputs={"sentence": sentence},
                expected={"entities": [{"name": n, "type": t} for n, t in ents],
                          "relationships": [{"source": s, "relation": r, "target": t} for s, r, t in rels]})


def _task(tmp_path: Path) -> object:
    return load_task(write_task(tmp_path / "t", TOML, {"train": []}))


ITEMS = [
    _item("a", "Oracle is monitored by Grafana.", [("Oracle", "datastore"), ("Grafana", "tool")],
          [("Grafana", "MONITORS", "Oracle")]),
    _item("b", "The ledger service is written in Go and reads Google Cloud Storage.",
          [("ledger service", "service"), ("Go", "language"), ("Google Cloud Storage", "datastore")],
          [("ledger service", "WRITTEN_IN", "Go"), ("ledger service", "DEPENDS_ON", "Google Cloud Storage")]),
    _item("c", "Nagios watches the chat backend, written in Rust.",
          [("Nagios", "tool"), ("chat backend", "service"), ("Rust", "language")],
          [("Nagios", "MONITORS", "chat backend"), ("chat backend", "WRITTEN_IN", "Rust")]),
    _item("d", "Someone mentions a thing.", [("Kafka", "team")], []),  # the name is not in the sentence
]


def test_swapped_copy_replaces_names_in_the_sentence_and_the_answer_within_their_kind(tmp_path: Path) -> None:
    out = swap_entities(_task(tmp_path), ITEMS, copies=1, seed=0)
    by_id = {o.id: o for o in out}
    assert sorted(by_id) == ["a~swap1", "b~swap1", "c~swap1"]  # d's name is not in its sentence: no copy
    a = by_id["a~swap1"]
    # the only other datastore is Google Cloud Storage, the only other tool Nagios
    assert a.inputs["sentence"] == "Google Cloud Storage is monitored by Nagios."
    assert a.expected == {"entities": [{"name": "Google Cloud Storage", "type": "datastore"},
                                       {"name": "Nagios", "type": "tool"}],
                          "relationships": [{"source": "Nagios", "relation": "MONITORS",
                                             "target": "Google Cloud Storage"}]}
    b = by_id["b~swap1"]
    # "Go" is swapped as a word, never inside "Google": the sentence keeps one mention per entity
    assert b.inputs["sentence"] == "The chat backend is written in Rust and reads Oracle."
    assert [r["target"] for r in b.expected["relationships"]] == ["Rust", "Oracle"]


def test_swaps_are_deterministic_and_never_give_two_entities_one_name(tmp_path: Path) -> None:
    task = _task(tmp_path)
    many = ITEMS + [_item("e", "Kafka and Redis replicate.", [("Kafka", "datastore"), ("Redis", "datastore")], [])]
    first = swap_entities(task, many, copies=3, seed=7)
    assert [(o.id, o.inputs) for o in first] == [(o.id, o.inputs) for o in swap_entities(task, many, 3, seed=7)]
    for o in first:
        names = [e["name"] for e in o.expected["entities"]]
        assert len(set(names)) == len(names)
        assert all(n in o.inputs["sentence"] for n in names)
    e_copies = [o for o in first if o.id.startswith("e~")]
    assert len(e_copies) == 3 and all({"Kafka", "Redis"}.isdisjoint(o.inputs["sentence"].split()) for o in e_copies)


def test_other_kinds_and_zero_copies_get_nothing(tmp_path: Path) -> None:
    assert swap_entities(_task(tmp_path), ITEMS, copies=0) == []
    classify = load_task(write_task(tmp_path / "c", 'name = "c"\nkind = "classify"\n[data]\ntrain = "train.jsonl"\n'
                                    '[prompt]\ntemplate = "{{ text }}"\n[classify]\nlabels = ["x", "y"]\n',
                                    {"train": []}))
    assert swap_entities(classify, ITEMS, copies=2) == []


def test_planned_swaps_fill_small_extraction_data_up_to_about_400_examples(tmp_path: Path) -> None:
    from honed.train.config import TuneConfig
    from honed.train.plan_defaults import plan_swaps

    task = _task(tmp_path)
    assert plan_swaps(task, TuneConfig(), 80)[0] == 4  # examples/extract: 80 sentences → 400 examples
    assert plan_swaps(task, TuneConfig(), 150)[0] == 2
    assert plan_swaps(task, TuneConfig(), 400)[0] == 0
    assert plan_swaps(task, TuneConfig(entity_swaps=1), 80) == (1, "set by you")
    no_entities = load_task(write_task(tmp_path / "n", TOML.replace('entities_key = "entities"\n', ""), {"train": []}))
    assert plan_swaps(no_entities, TuneConfig(), 80)[0] == 0
