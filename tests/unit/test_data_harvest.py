"""Harvest: rules over confidence signals on a request-log fixture (seed 000's cascade); the log format."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from honed.data.harvest import harvest, load_rules, parse_condition, parse_rule, write_harvest
from honed.data.lock import write_lock
from honed.data.logs import LogRecord, append_record, read_log
from honed.errors import DataError
from honed.task import load_items, load_task
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.unit

RULES = """
[[rule]]
name = "confirmed"
when = "downstream_confirmed == true"
[[rule]]
name = "nothing found"
when = "all_layers_failed == true"
label = "NONE"
[[rule]]
name = "probe found it"
when = 'answer == "NONE" and probe_found == true'
label_from = "probe_pick"
[[rule]]
name = "unconfirmed"
when = "margin < 0.5"
use = "edge"
[oversample]
NONE = 2
"""


@pytest.fixture
def pick_task(tmp_path: Path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "pick"
    shutil.copytree(EXAMPLES / "pick", folder)
    task = load_task(folder)
    write_lock(task, load_items(task, "test"))
    return task


def _record(n: int, inputs: dict, answer, signals: dict, task: str = "find-page") -> LogRecord:  # type: ignore[no-untyped-def]
    return LogRecord.new(
        task=task,
        inputs=inputs,
        output=str(answer),
        answer=answer,
        layer="tuned",
        model="smollm2-135m",
        latency_ms=120.0 + n,
        signals=signals,
        request_id=f"r{n}",
        timestamp=datetime(2026, 11, 23, 12, 0, n, tzinfo=UTC),
    )


def _log(tmp_path: Path, task) -> Path:  # type: ignore[no-untyped-def]
    test = load_items(task, "test")
    links = ["Home", "Careers", "Blog", "Contact us"]
    near = dict(test[1].inputs, company=test[1].inputs["company"].upper())
    records = [
        _record(
            1,
            {"company": "Acme", "target": "careers page", "candidates": links},
            2,
            {"downstream_confirmed": True, "margin": 0.9},
        ),
        _record(
            2,
            {"company": "Bolt", "target": "careers page", "candidates": ["Home", "Blog"]},
            1,
            {"all_layers_failed": True},
        ),
        _record(
            3,
            {"company": "Cove", "target": "contact page", "candidates": links},
            3,
            {"downstream_confirmed": False, "margin": 0.2},
        ),
        _record(
            4,
            {"company": "Dune", "target": "contact page", "candidates": links},
            "NONE",
            {"probe_found": True, "probe_pick": 4},
        ),
        _record(
            5,
            {"company": "Acme", "target": "careers page", "candidates": links},
            2,
            {"downstream_confirmed": True},
            task="other-task",
        ),
        _record(
            6,
            {"company": "Acme", "target": "careers page", "candidates": links},
            2,
            {"downstream_confirmed": True},
        ),
        _record(7, dict(test[0].inputs), test[0].expected, {"downstream_confirmed": True}),
        _record(8, near, 1, {"downstream_confirmed": True}),
        _record(
            9,
            {"company": "Echo", "target": "careers page", "candidates": links},
            9,
            {"downstream_confirmed": True},
        ),
        _record(10, {"company": "Fern", "target": "careers page", "candidates": links}, 2, {"margin": 0.7}),
        _record(
            11,
            {"company": "Gale", "target": "careers page", "candidates": links},
            "NONE",
            {"downstream_confirmed": 1},
        ),
        _record(
            12,
            {"company": "Hive", "target": "careers page", "candidates": ["Shop", "FAQ"]},
            "NONE",
            {"all_layers_failed": True},
        ),
    ]
    path = tmp_path / "requests.jsonl"
    for r in records:
        append_record(path, r)
    return path


def test_harvest_rules_on_a_log(pick_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(RULES)
    log = _log(tmp_path, pick_task)
    result = harvest(pick_task, log, load_rules(rules_file))
    train = {i.id: i.expected for i in result.train}
    assert train == {
        "log-r1": 2,
        "log-r2": "NONE",
        "log-r4": 4,
        "log-r12": "NONE",
        "log-r2~2": "NONE",
        "log-r12~2": "NONE",
    }  # NONE oversampled x2; r4 labelled by the probe
    assert [(i.id, i.expected) for i in result.edge] == [("log-r3", 3)]
    assert result.dropped == {
        "other task": 1,
        "input already harvested": 1,
        "input is a locked test item": 1,
        "near duplicate of a locked test item": 1,
        "answer not valid for the task": 1,
        "no rule matched": 2,
    }  # r10 no signal; r11: 1 is not true
    assert result.per_rule == {"confirmed": 5, "nothing found": 2, "probe found it": 1, "unconfirmed": 1}
    assert result.counts == {"records": 12, "train": 4, "edge": 1, "train_after_oversampling": 6}
    assert result.oversampled == {"NONE": 2}
    paths = write_harvest(pick_task, result, tmp_path / "out", [str(log)])
    assert len(load_items(pick_task, "custom", path=paths["train"])) == 6
    assert json.loads(paths["summary"].read_text())["dropped"]["no rule matched"] == 2


def test_command_line_rules_and_default_edge(pick_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from honed.data.harvest import HarvestRules

    log = _log(tmp_path, pick_task)
    rules = HarvestRules(
        rules=[
            parse_rule("train: downstream_confirmed == true and margin >= 0.8"),
            parse_rule("train label=NONE: all_layers_failed == true"),
        ],
        default="edge",
    )
    result = harvest(pick_task, log, rules)
    assert {i.id for i in result.train} == {"log-r1", "log-r2", "log-r12"}
    assert {i.id for i in result.edge} == {"log-r3", "log-r4", "log-r10", "log-r11"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("margin <", "expected NAME OP VALUE"),
        ("answer == NONE", "not JSON"),
        ('margin < "high"', "needs a number"),
    ],
)
def test_bad_conditions(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_condition(text)


def test_condition_parsing() -> None:
    assert parse_condition("a == true and signals.b >= 0.5 AND c != 'x'") == (
        ("a", "==", True),
        ("signals.b", ">=", 0.5),
        ("c", "!=", "x"),
    )


def test_bad_rules_files(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text('[[rule]]\nwhen = "margin <"\n[[rule]]\nwhen = "a == 1"\nuse = "keep"\ncolour = 1\n')
    with pytest.raises(DataError) as err:
        load_rules(f)
    msg = str(err.value)
    assert (
        str(f) in msg and "rule.0.when" in msg and "rule.1.use" in msg and "rule.1.colour: unknown key" in msg
    )
    f.write_text("[oversample]\nNONE = 0.5\n")
    with pytest.raises(DataError, match="oversample factors must be >= 1"):
        load_rules(f)
    f.write_text("[[rule]\n")
    with pytest.raises(DataError, match="not valid TOML"):
        load_rules(f)
    with pytest.raises(DataError, match="expected 'train|edge|drop"):
        parse_rule("keep: a == 1")


def test_malformed_log_lines(pick_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = _log(tmp_path, pick_task)
    lines = log.read_text().splitlines()
    bad = json.loads(lines[0])
    bad["latency_ms"] = -5
    del bad["layer"]
    log.write_text("\n".join([lines[1], json.dumps(bad), *lines[2:]]) + "\n")
    with pytest.raises(DataError) as err:
        list(read_log(log))
    msg = str(err.value)
    assert f"{log}:2: not a request-log record" in msg and "field 'layer': Field required" in msg
    assert "field 'latency_ms'" in msg
    log.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=f"{log}:2: not valid JSON"):
        list(read_log(log))
    # a crash mid-write leaves a partial last line: skipped and noted, not fatal
    log.write_text("\n".join(lines) + "\n" + lines[0][:40])
    notes: list[str] = []
    assert len(list(read_log(log, notes))) == len(lines) and "incomplete last line" in notes[0]


def test_log_record_schema() -> None:
    r = LogRecord.new(
        task="t",
        inputs={"text": "hi"},
        output="billing",
        answer="billing",
        layer="tuned",
        model="m",
        latency_ms=3.0,
        signals={"margin": 0.8, "escalated": False},
    )
    again = LogRecord.model_validate_json(r.model_dump_json())
    assert again == r and len(r.input_hash) == 64 and r.timestamp.tzinfo is not None
    with pytest.raises(Exception, match="extra"):
        LogRecord.model_validate({**r.model_dump(), "colour": "red"})


def test_build_rules_merges_file_and_command_line(tmp_path: Path) -> None:
    from honed.data.harvest import build_rules

    f = tmp_path / "r.toml"
    f.write_text(RULES)
    rules = build_rules(f, ["edge: margin < 0.9"], {"NONE": "3", "PICK": "1.5"}, "edge")
    assert len(rules.rules) == 5 and rules.rules[-1].use == "edge"
    assert rules.oversample == {"NONE": 3.0, "PICK": 1.5} and rules.default == "edge"
    with pytest.raises(DataError, match="must be a number"):
        build_rules(None, [], {"NONE": "lots"})
    with pytest.raises(DataError, match="default"):
        build_rules(None, ["train: a == 1"], None, "keep")
