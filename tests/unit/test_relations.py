"""The relation-type check of extraction answers (honed.task.relations) and everything that reads it: the spec,
the data check, parse_output, the scores (usage.md: tests/unit/test_export_docs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.errors import DataError, TaskError
from honed.evaluate.output import parse_output
from honed.evaluate.scoring import judge, score
from honed.task.data import Item, load_items
from honed.task.relations import check_relationships
from honed.task.spec import Task, load_task
from honed.types import Response

pytestmark = pytest.mark.unit

SCHEMA = {
    "type": "object",
    "properties": {
        "entities": {"type": "array", "items": {
            "type": "object", "required": ["name", "type"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "type": {"enum": ["team", "service", "datastore", "tool"]}}}},
        "relationships": {"type": "array", "items": {
            "type": "object", "required": ["source", "relation", "target"], "additionalProperties": False,
            "properties": {"source": {"type": "string"}, "target": {"type": "string"},
                           "relation": {"enum": ["MANAGES", "DEPENDS_ON", "MONITORS", "REPLACES"]}}}},
    },
    "required": ["entities", "relationships"],
}

ALLOWED = '''[["team", "MANAGES", "service"], ["team", "MANAGES", "datastore"], ["service", "DEPENDS_ON", "datastore"],
  ["tool", "MONITORS", "service"]]'''


KEYS = 'entities_key = "entities"\nrelationships_key = "relationships"\n'


def _task(tmp_path: Path, allowed: str | None = ALLOWED, keys: str = KEYS) -> Task:
    """The graph task; `allowed` None: no triples; `keys`: the [extract] keys naming entities and relationships."""
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    triples = "" if allowed is None else f"allowed_relationships = {allowed}\n"
    (tmp_path / "honed.toml").write_text(f"""
name = "graph"
kind = "extract"
[data]
test = "test.jsonl"
[prompt]
template = "{{{{ sentence }}}}"
[extract]
schema_file = "schema.json"
{keys}{triples}""", encoding="utf-8")
    return load_task(tmp_path)


def _ents(**types: str) -> list[dict[str, str]]:
    return [{"name": n.replace("_", " "), "type": t} for n, t in types.items()]


def _rel(s: str, r: str, t: str) -> dict[str, str]:
    return {"source": s, "relation": r, "target": t}


def test_a_relationship_listed_only_the_other_way_round_is_turned_round(tmp_path: Path) -> None:
    ex = _task(tmp_path).spec.extract
    answer = {"entities": _ents(Oracle="datastore", infra_team="team"),
              "relationships": [_rel("Oracle", "MANAGES", "infra team")]}
    checked = check_relationships(ex, answer)
    assert checked.value["relationships"] == [_rel("infra team", "MANAGES", "Oracle")]
    assert (checked.flipped, checked.dropped) == (1, 0)
    assert answer["relationships"] == [_rel("Oracle", "MANAGES", "infra team")]  # the model's answer is not edited


def test_one_listed_neither_way_is_dropped_and_the_rest_kept_in_order(tmp_path: Path) -> None:
    ex = _task(tmp_path).spec.extract
    rels = [_rel("checkout", "DEPENDS_ON", "Redis"),       # service → datastore: listed
            _rel("ML team", "MONITORS", "Grafana"),        # team → tool: listed neither way
            _rel("Grafana", "MONITORS", "checkout"),       # tool → service: listed
            _rel("checkout", "REPLACES", "Redis")]         # REPLACES has no triple: not checked
    answer = {"entities": _ents(checkout="service", Redis="datastore", ML_team="team", Grafana="tool"),
              "relationships": rels}
    checked = check_relationships(ex, answer)
    assert checked.value["relationships"] == [rels[0], rels[2], rels[3]]
    assert (checked.flipped, checked.dropped) == (0, 1)
    assert checked.value["entities"] == answer["entities"]


def test_names_match_as_the_scores_match_them_and_untyped_ends_are_left_alone(tmp_path: Path) -> None:
    ex = _task(tmp_path).spec.extract
    answer = {"entities": _ents(Payments_API="service", Infra_Team="team"),
              "relationships": [_rel("payments  api", "manages", "infra team"),   # case, spaces, lower relation
                                _rel("Kafka", "MANAGES", "Infra Team")]}         # Kafka is not among the entities
    checked = check_relationships(ex, answer)
    assert checked.value["relationships"] == [_rel("infra team", "manages", "payments  api"),
                                              _rel("Kafka", "MANAGES", "Infra Team")]


@pytest.mark.parametrize("answer", [
    {"entities": _ents(a="team", b="service"), "relationships": [_rel("a", "MANAGES", "b")]},  # already right
    {"entities": "many", "relationships": [_rel("a", "MANAGES", "b")]},  # nothing typed
    {"entities": [{"name": 3, "type": "team"}], "relationships": ["a MANAGES b", {"source": 1}, None]},
    {"relationships": 7},
    ["not", "an", "object"],
])
def test_an_answer_with_nothing_to_change_comes_back_as_the_same_object(tmp_path: Path, answer: object) -> None:
    checked = check_relationships(_task(tmp_path).spec.extract, answer)
    assert checked.value is answer and (checked.flipped, checked.dropped) == (0, 0)


def test_the_spec_refuses_triples_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"allowed_relationships\[1\] \['team', 'OWNS', 'service'\]: relation "
                                        r"'OWNS' is not one the schema allows"):
        _task(tmp_path, '[["team", "MANAGES", "service"], ["team", "OWNS", "service"]]')
    with pytest.raises(TaskError, match="entity type 'person' is not one the schema allows"):
        _task(tmp_path, '[["person", "MANAGES", "service"]]')
    with pytest.raises(TaskError, match=r"lists \['team', 'MANAGES', 'service'\] twice"):
        _task(tmp_path, '[["team", "MANAGES", "service"], ["team", "MANAGES", "service"]]')
    with pytest.raises(TaskError, match="allowed_relationships"):
        _task(tmp_path, '[["team", "MANAGES"]]')


def test_a_huge_list_of_triples_is_refused_not_loaded(tmp_path: Path) -> None:
    huge = "[" + ", ".join(f'["team", "MANAGES", "s{i}"]' for i in range(10_001)) + "]"
    with pytest.raises(TaskError, match="allowed_relationships.*at most 10000"):
        _task(tmp_path, huge)


def test_the_triples_need_to_know_where_entities_and_relationships_are(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="allowed_relationships needs `entities_key`"):
        _task(tmp_path, keys='relationships_key = "relationships"\n')


def test_an_expected_answer_that_contradicts_the_triples_is_refused_with_its_line(tmp_path: Path) -> None:
    task = _task(tmp_path)
    good = {"entities": _ents(a="team", b="service"), "relationships": [_rel("a", "MANAGES", "b")]}
    bad = {"entities": _ents(a="team", b="tool"), "relationships": [_rel("a", "MANAGES", "b")]}
    rows = [{"id": "1", "sentence": "x", "expected": good}, {"id": "2", "sentence": "y", "expected": bad}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.jsonl:2: expected answer: relationship 1 \(a MANAGES b\) joins "
                                        r"team → tool.*\[\"team\", \"MANAGES\", \"tool\"\]"):
        load_items(task, "test", tmp_path / "test.jsonl")


def test_parse_output_checks_and_the_scores_report_both_the_checked_and_the_models_own(tmp_path: Path) -> None:
    task = _task(tmp_path)
    ents = _ents(Oracle="datastore", infra_team="team", Grafana="tool", billing="service")
    items = [
        # the model inverted MANAGES: turned round, now right
        (Item("1", {"sentence": "s"}, {"entities": ents, "relationships": [_rel("infra team", "MANAGES", "Oracle")]}),
         {"entities": ents, "relationships": [_rel("Oracle", "MANAGES", "infra team")]}),
        # a right one and an impossible one (dropped)
        (Item("2", {"sentence": "s"}, {"entities": ents, "relationships": [_rel("Grafana", "MONITORS", "billing")]}),
         {"entities": ents, "relationships": [_rel("Grafana", "MONITORS", "billing"),
                                              _rel("Oracle", "MONITORS", "Grafana")]}),
        # nothing to check
        (Item("3", {"sentence": "s"}, {"entities": ents, "relationships": [_rel("billing", "DEPENDS_ON", "Oracle")]}),
         {"entities": ents, "relationships": []}),
    ]
    recs = [judge(task, item, 0, Response(text=json.dumps(ans), finish_reason="stop")) for item, ans in items]
    assert recs[0].answer["relationships"] == [_rel("infra team", "MANAGES", "Oracle")]
    assert recs[0].unchecked_answer == items[0][1] and recs[0].correct
    assert recs[2].unchecked_answer is None  # unchanged: nothing kept twice
    parsed = parse_output(task, {}, Response(text=json.dumps(items[0][1]), finish_reason="stop"))
    assert parsed.unchecked == items[0][1] and parsed.cause is None
    m = score(task, recs, [[]] * 3, n_resamples=50)["metrics"]
    # checked: tp 2 (items 1, 2), fp 0, fn 1 (item 3); the model's own: tp 1, fp 2, fn 2
    assert m["relationship_f1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    assert m["relationship_unchecked_f1"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 2))
    assert (m["relationships_flipped"], m["relationships_dropped"]) == (1, 1)


def test_a_task_without_triples_reports_no_unchecked_scores(tmp_path: Path) -> None:
    task = _task(tmp_path, allowed=None)
    ans = {"entities": _ents(Oracle="datastore", infra_team="team"),
           "relationships": [_rel("Oracle", "MANAGES", "infra team")]}
    rec = judge(task, Item("1", {}, ans), 0, Response(text=json.dumps(ans), finish_reason="stop"))
    assert rec.answer == ans and rec.correct
    assert "relationship_unchecked_f1" not in score(task, [rec], [[]], n_resamples=20)["metrics"]

