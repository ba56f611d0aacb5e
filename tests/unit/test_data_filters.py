"""The generate filters on hand-made candidates, the teacher's text parsing, and `filter_file`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.data.filters import (
    Candidate,
    Survival,
    consistency,
    grounding,
    input_valid,
    near_duplicate,
    schema,
    ungrounded_values,
)
from honed.data.generate import GenerateConfig, filter_file
from honed.data.teacher import chunk_documents, input_request, parse_input
from honed.task import Item, load_task
from honed.types import Response, Sampling
from tests.conftest import CLASSIFY_TOML, EXAMPLES, write_task

pytestmark = pytest.mark.unit


@pytest.fixture
def task(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_task(write_task(tmp_path / "mini", CLASSIFY_TOML))


def _c(cid: str, text: str | None, answers: list | None = None, causes: list | None = None) -> Candidate:
    answers = answers or []
    return Candidate(
        cid,
        None if text is None else {"text": text},
        answers=answers,
        causes=causes if causes is not None else [None] * len(answers),
    )


def test_input_valid(task) -> None:  # type: ignore[no-untyped-def]
    cands = [
        _c("ok", "I was charged twice"),
        _c("none", None),
        _c("empty", "   "),
        _c("long", "x" * 50),
        Candidate("cut", None, input_problem="cut at max_tokens"),
    ]
    kept, stage = input_valid(cands, ["text"], max_chars=40)
    assert [c.id for c in kept] == ["ok"]
    assert stage.reasons == {"no input": 1, "empty field": 1, "too long": 1, "cut at max_tokens": 1}
    assert cands[3].rejected_at == "input_valid" and cands[3].reason == "too long: over 40 characters"


def test_near_duplicate_against_existing_and_each_other() -> None:
    existing = [
        ("seed s1", "Where is my parcel? It was due Monday."),
        ("test t9", "My card was charged twice"),
    ]
    cands = [
        _c("a", "where is my parcel?? it was due monday"),
        _c("b", "Please add a dark mode"),
        _c("c", "PLEASE ADD A DARK MODE!"),
        _c("d", "my card was charged twice."),
    ]
    kept, stage = near_duplicate(cands, existing)
    assert [c.id for c in kept] == ["b"]
    assert cands[0].reason == "near duplicate: of seed s1 (Jaccard 1.00)"
    assert cands[2].reason.startswith("near duplicate: of candidate b")
    assert cands[3].reason.startswith("near duplicate: of test t9")
    assert stage.n_in == 4 and stage.n_out == 1


def test_schema_and_consistency(task) -> None:  # type: ignore[no-untyped-def]
    cands = [
        _c("agree", "x", ["billing", "billing", None], [None, None, "unparseable"]),
        _c("split", "x", ["billing", "shipping", "NONE"]),
        _c("invalid", "x", [None, None, None], ["unparseable", "refused", "unparseable"]),
        _c("off-label", "x", ["refund", "refund", "refund"]),
    ]
    kept, st = schema(task, cands)
    assert [c.id for c in kept] == ["agree", "split"]
    assert st.reasons == {"unparseable": 1, "invalid for the task": 1}
    kept, st = consistency(task, kept, min_agree=2)
    assert [c.id for c in kept] == ["agree"] and kept[0].expected == "billing"
    assert cands[1].reason == "disagreement: top answer 1 of 3 < 2"


def test_grounding_on_extract_and_na_elsewhere(task) -> None:  # type: ignore[no-untyped-def]
    extract = load_task(EXAMPLES / "extract")
    sentence = "The payments API caches search results in Redis."
    good = {
        "entities": [{"name": "payments API", "type": "service"}, {"name": "Redis", "type": "datastore"}],
        "relationships": [{"source": "payments API", "relation": "STORES_DATA_IN", "target": "Redis"}],
    }
    bad = {"entities": [{"name": "Memcached", "type": "datastore"}], "relationships": []}
    assert ungrounded_values(extract, good, sentence) == []  # types and relations are the schema's enums
    assert ungrounded_values(extract, bad, sentence) == ["Memcached"]
    cands = [
        Candidate("g", {"sentence": sentence}, expected=good),
        Candidate("b", {"sentence": sentence}, expected=bad),
    ]
    kept, st = grounding(extract, cands)
    assert [c.id for c in kept] == ["g"] and cands[1].reason == "not in source: ['Memcached']"
    kept, st = grounding(task, [_c("x", "anything")])
    assert len(kept) == 1 and st.note == "n/a for classify tasks"


def test_survival_table_formats() -> None:
    from honed.data.filters import Stage

    s = Survival(
        10,
        [Stage("input_valid", 10, 7, {"empty": 3}), Stage("schema", 7, 2, {"unparseable": 5})],
        kept=3,
        repair={"tried": 5, "recovered": 1},
    )
    doc = s.to_json()
    assert doc["generated"] == 10 and doc["stages"][1]["n_out"] == 2 and doc["kept"] == 3
    md = s.markdown()
    assert "| schema | 7 | 2 | 5 | unparseable (5) |" in md and "| repair (1 round) | 5 | +1 | 4 | |" in md
    s.table()


def test_parse_input_single_and_multi_field() -> None:
    r = Response(text='1. text: "My parcel never arrived"\nmore', finish_reason="stop")
    assert parse_input(["text"], r) == ({"text": "My parcel never arrived"}, None)
    assert parse_input(["text"], Response("Here is a new one:", "stop"))[1].startswith("not an input")
    assert parse_input(["text"], Response("something long", "length")) == (None, "cut at max_tokens")
    assert parse_input(["text"], Response("", "error", error="boom")) == (None, "teacher error: boom")
    fields = ["company", "candidates"]
    ok = Response('{"company": "Acme", "candidates": ["Jobs", "Blog"], "extra": 1}', "stop")
    assert parse_input(fields, ok, {"candidates": list}) == (
        {"company": "Acme", "candidates": ["Jobs", "Blog"]},
        None,
    )
    wrong = Response('{"company": "Acme", "candidates": "Jobs"}', "stop")
    assert (
        parse_input(fields, wrong, {"candidates": list})[1] == "wrong type: candidates is str, expected list"
    )
    assert parse_input(fields, Response("no json here", "stop"))[1] == "not JSON"


def test_input_request_uses_seeds_or_the_document(task) -> None:  # type: ignore[no-untyped-def]
    seeds = [
        Item("s1", {"text": "Refund please"}, "billing"),
        Item("s2", {"text": "Parcel late"}, "shipping"),
    ]
    req = input_request(task, ["text"], seeds, Sampling(max_tokens=50, temperature=0.8, seed=3))
    body = req.messages[0].content
    assert (
        "1. Refund please\n2. Parcel late" in body and req.sampling.stop == ("\n",) and req.sampling.seed == 3
    )
    req = input_request(task, ["text"], [], Sampling(), chunk="Our shop ships to 12 countries.")
    assert "Our shop ships to 12 countries." in req.messages[0].content


def test_chunk_documents(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text(
        "First paragraph. It is short.\n\n" + " ".join(f"Sentence {i} is here." for i in range(30))
    )
    chunks = chunk_documents([doc], max_chars=120)
    assert chunks[0] == ("doc.txt#1", "First paragraph. It is short.")
    assert all(len(c) <= 120 for _, c in chunks) and len(chunks) > 3
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(Exception, match="empty"):
        chunk_documents([tmp_path / "empty.txt"])
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(Exception, match="not UTF-8"):
        chunk_documents([tmp_path / "bin.txt"])


def test_config_checks_m_le_k() -> None:
    with pytest.raises(Exception, match="cannot exceed k"):
        GenerateConfig(k=3, min_agree=4)


def test_filter_file_on_items_and_candidates(mini_task: Path, tmp_path: Path) -> None:
    task = load_task(mini_task)
    items = tmp_path / "items.jsonl"
    items.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"id": "1", "text": "I was charged twice", "expected": "billing"},  # the task's own test item
                {"id": "2", "text": "Please add a dark mode", "expected": "refund"},
                {"id": "3", "text": "My parcel is stuck in customs", "expected": "shipping"},
            ]
        )
    )
    kept, survival, _ = filter_file(task, items, out=tmp_path / "kept.jsonl")
    assert [i.id for i in kept] == ["3"] and survival.kept == 1
    assert [(s.name, s.n_out) for s in survival.stages] == [
        ("input_valid", 3),
        ("near_duplicate", 2),
        ("schema", 1),
        ("consistency", 1),
        ("grounding", 1),
    ]
    assert (tmp_path / "kept.jsonl").read_text().count("\n") == 1
    cand_file = tmp_path / "candidates.jsonl"
    cand_file.write_text(
        json.dumps(
            Candidate(
                "g1",
                {"text": "Refund my order"},
                answers=["billing", "billing", "NONE"],
                causes=[None, None, None],
            ).to_json()
        )
        + "\n"
    )
    kept, survival, _ = filter_file(task, cand_file, min_agree=3)
    assert kept == [] and survival.stages[3].reasons == {"disagreement": 1}
    kept, _, _ = filter_file(task, cand_file, min_agree=2)
    assert [(i.id, i.expected) for i in kept] == [("g1", "billing")]


def test_filtering_a_split_file_does_not_match_itself() -> None:
    task = load_task(EXAMPLES / "classify")
    kept, survival, _ = filter_file(task, task.split_path("train"))
    assert survival.stages[1].n_in == survival.stages[1].n_out == 200 and len(kept) == 200


def test_placeholders_and_a_one_sided_teacher_are_caught(task) -> None:  # type: ignore[no-untyped-def]
    from honed.data.generate import _class_check

    assert parse_input(["text"], Response("[Your User's Input]", "stop")) == (
        None,
        "not an input: a placeholder",
    )
    assert parse_input(["text"], Response("<message>", "stop"))[1] == "not an input: a placeholder"
    items = [Item(f"g{i}", {"text": f"t{i}"}, "NONE") for i in range(9)] + [
        Item("b", {"text": "b"}, "billing")
    ]
    counts, warnings = _class_check(task, items)
    assert counts == {"billing": 1, "NONE": 9} and "9 of the 10 kept items (90%) are NONE" in warnings[0]
    assert _class_check(task, items[:4])[1] == []  # too few to judge


def test_grounding_needs_the_input_and_the_document() -> None:
    extract = load_task(EXAMPLES / "extract")
    doc = "Our payments API keeps its cache in Redis. The search team runs Kafka."
    answer = {
        "entities": [{"name": "payments API", "type": "service"}, {"name": "Memcached", "type": "datastore"}],
        "relationships": [],
    }
    written = Candidate(
        "w", {"sentence": "The payments API caches results in Memcached."}, source=doc, expected=answer
    )  # Memcached is in the input the teacher wrote, not in the document
    kept, _ = grounding(extract, [written])
    assert kept == [] and written.reason == "not in source: ['Memcached']"
