"""The gate's plumbing without a model: run-folder errors, pairing with a bake-off arm, the re-gate cache, and
the CLI's one-line errors. Arms are real eval run folders written by `evaluate` from planted answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from honed.backends.scripted import ScriptedBackend
from honed.errors import UserError
from honed.evaluate.runner import EvalResult, evaluate
from honed.gating import cache, read_tune_run
from honed.gating.arm import compare_arm, load_arm
from honed.gating.forgetting import load_general_check
from honed.store import Store
from honed.task.data import load_items
from honed.task.spec import Task, load_task
from honed.train.status import write_status
from tests.conftest import CLASSIFY_TOML, write_task

pytestmark = pytest.mark.unit

LABELS = ["billing", "shipping", "NONE"]
ROWS = [{"id": f"i{n}", "text": f"message {n}", "expected": LABELS[n % 3]} for n in range(12)]


@pytest.fixture
def task(tmp_path: Path) -> Task:
    return load_task(write_task(tmp_path / "t", CLASSIFY_TOML, {"test": ROWS}))


def _answers(mapping: dict[str, str]) -> ScriptedBackend:
    def script(req):  # the planted answer of the item whose text is in the prompt
        text = req.messages[-1].content
        return next(ans for msg, ans in mapping.items() if f"Message: {msg}\n" in text)

    # the planted answers name the model: the response cache must not hand one plant's answers to another
    return ScriptedBackend("planted-" + "-".join(mapping.values()), script=script)


def _run(task: Task, answer_of, store: Store, write_run: bool = True) -> EvalResult:
    mapping = {r["text"]: answer_of(r) for r in ROWS}
    return evaluate(task, _answers(mapping), "test", store=store, write_run=write_run)


def test_general_check_set_is_ours_and_apart_from_replay() -> None:
    from honed.data.replay import load_replay

    check = load_general_check()
    assert len(check) == 40 and len({p.id for p in check}) == 40
    replay = {r.prompt.strip().lower() for r in load_replay()}
    assert not [p.prompt for p in check if p.prompt.strip().lower() in replay]
    assert all(p.reference.strip() for p in check)


def test_read_tune_run_errors(tmp_path: Path, task: Task) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(UserError, match="not a tune run folder"):
        read_tune_run(run)
    (run / "manifest.json").write_text(json.dumps({"run_id": "x"}))
    with pytest.raises(UserError, match="missing: task_dir, base_model"):
        read_tune_run(run)
    (run / "manifest.json").write_text(json.dumps({"task_dir": str(tmp_path / "gone"),
                                                   "base_model": {"name": "smollm2-135m"}}))
    with pytest.raises(UserError, match=r"never finished \(no summary.json: the process was killed"):
        read_tune_run(run)
    (run / "summary.json").write_text('{"status": "complete"}')
    with pytest.raises(UserError, match="does not exist any more"):
        read_tune_run(run)
    (run / "manifest.json").write_text(json.dumps({"task_dir": str(task.root), "base_model": {"name": "m"}}))
    with pytest.raises(UserError, match="no adapter in best/"):
        read_tune_run(run)
    (run / "best").mkdir()
    (run / "best" / "adapter_config.json").write_text("{}")
    manifest, loaded, adapter = read_tune_run(run)
    assert loaded.name == "mini" and adapter == run / "best" and manifest["base_model"]["name"] == "m"


def test_vs_arm_flags_a_significantly_better_arm(task: Task) -> None:
    store = Store()
    arm = _run(task, lambda r: r["expected"], store)  # a perfect arm
    tuned = _run(task, lambda r: "NONE", store, write_run=False)  # a collapsed tuned model
    items = load_items(task, "test")
    info, check = compare_arm(load_arm(arm.run_dir, task, items), task, items, tuned.records, "macro_f1",
                              n_resamples=500)
    assert info["value"] == 1.0 and info["tuned_value"] < 0.3 and info["n_paired"] == 12
    assert info["difference_ci"][1] < 0 and not check["passed"] and not info["passed"]
    assert "arm is significantly better" in check["detail"]
    # an arm no better than the tuned model is reported, not a failure
    _, check2 = compare_arm(load_arm(arm.run_dir, task, items), task, items, arm.records, "macro_f1",
                            n_resamples=500)
    assert check2["passed"] and "no significant difference" in check2["detail"]
    # pairing is on the items both have: a gate limited to 5 items pairs 5
    info3, _ = compare_arm(load_arm(arm.run_dir, task, items[:5]), task, items[:5], tuned.records[:5],
                           "macro_f1", n_resamples=500)
    assert info3["n_paired"] == 5


def test_vs_arm_refuses_other_tasks_and_other_test_versions(tmp_path: Path, task: Task) -> None:
    store = Store()
    other = load_task(write_task(tmp_path / "o", CLASSIFY_TOML.replace('name = "mini"', 'name = "other"'),
                                 {"test": ROWS}))
    arm = _run(other, lambda r: r["expected"], store)
    items = load_items(task, "test")
    with pytest.raises(UserError, match="nothing to pair"):
        load_arm(arm.run_dir, task, items)
    edited = load_task(write_task(tmp_path / "e", CLASSIFY_TOML, {"test": [
        {**r, "expected": "billing"} for r in ROWS]}))
    arm2 = _run(edited, lambda r: "billing", store)
    with pytest.raises(UserError, match="another version of the test set"):
        load_arm(arm2.run_dir, task, items)


def test_regate_cache_round_trip(tmp_path: Path, task: Task) -> None:
    store = Store()
    items = load_items(task, "test")
    base = cache.Side(_run(task, lambda r: "NONE", store), {"mean_nll": 2.0, "n_prompts": 40}, "a" * 64)
    tuned = cache.Side(_run(task, lambda r: r["expected"], store), {"mean_nll": 2.1, "n_prompts": 40}, "a" * 64)
    adapter = tmp_path / "best"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    key = cache.fingerprint(task, "a" * 64, adapter, items)
    run = tmp_path / "run"
    run.mkdir()
    assert cache.load(run, key, items) is None
    cache.save(run, key, base, tuned)
    hit = cache.load(run, key, items)
    assert hit is not None
    b, t = hit
    assert b.nll["mean_nll"] == 2.0 and t.nll["mean_nll"] == 2.1
    assert [r.answer for r in t.result.records] == [r["expected"] for r in ROWS]
    assert t.result.run_dir == tuned.result.run_dir
    # another limit, another adapter or another model is another fingerprint
    assert cache.load(run, key, items[:5]) is None
    (adapter / "adapter_config.json").write_text('{"r": 16}')
    assert cache.fingerprint(task, "a" * 64, adapter, items) != key
    assert cache.fingerprint(task, "b" * 64, adapter, items) != cache.fingerprint(task, "a" * 64, adapter, items)
    # a deleted eval run folder means re-evaluating, not a crash
    import shutil

    shutil.rmtree(tuned.result.run_dir)
    assert cache.load(run, key, items) is None


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, honed_home: Path) -> None:
    env = {**os.environ, "HONED_HOME": str(honed_home)}
    cmd = [sys.executable, "-m", "honed", "gate"]
    missing = subprocess.run([*cmd, "no-such-run"], capture_output=True, text=True, env=env, check=False)
    assert missing.returncode == 2 and "run 'no-such-run' not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = subprocess.run([*cmd, str(tmp_path / "empty")], capture_output=True, text=True, env=env, check=False)
    assert empty.returncode == 2 and "not a tune run folder" in empty.stderr and "Traceback" not in empty.stderr


def _planted_run(tmp_path: Path, task: Task, base_answer, tuned_answer, nll: tuple[float, float] = (2.0, 2.1),
                 trained_sha: str | None = None, limit: int | None = None) -> Path:
    """A tune-like run folder whose evaluations were already recorded (planted answers): gate() runs end to end
    from the re-gate cache, without a model. The 'model file' is any file: only its sha256 is read. With `limit`,
    the evaluations of the first `limit` items are recorded too (for `gate(run, limit=...)`)."""
    from honed.backends.models import file_sha256

    tmp_path.mkdir(parents=True, exist_ok=True)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"not really a model")
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "adapter_config.json").write_text('{"r": 8}')
    write_status(run, "complete")
    (run / "summary.json").write_text('{"status": "complete"}')
    (run / "manifest.json").write_text(json.dumps({
        "run_id": "run-1", "task_dir": str(task.root),
        "base_model": {"name": "m", "path": str(model), "sha256": trained_sha or file_sha256(model),
                       "from_gguf": True}}))
    store = Store()
    items = load_items(task, "test")
    base = cache.Side(_run(task, base_answer, store), {"mean_nll": nll[0], "n_prompts": 40}, None)
    tuned = cache.Side(_run(task, tuned_answer, store), {"mean_nll": nll[1], "n_prompts": 40}, None)
    cache.save(run, cache.fingerprint(task, file_sha256(model), run / "best", items), base, tuned)
    if limit is not None:
        part = items[:limit]
        sides = [cache.Side(evaluate(task, _answers({r["text"]: answer(r) for r in ROWS}), "test", items=part,
                                     store=store), {"mean_nll": v, "n_prompts": 40}, None)
                 for answer, v in ((base_answer, nll[0]), (tuned_answer, nll[1]))]
        cache.save(run, cache.fingerprint(task, file_sha256(model), run / "best", part), *sides)
    return run


CONTRACT = {"status", "created", "run_id", "task", "task_dir", "primary_metric", "split", "n_items", "base", "tuned",
            "relative_improvement", "relative_improvement_ci", "difference", "difference_ci", "p_value",
            "min_relative_improvement", "threshold", "min_value", "prompt", "checks", "vs_arm", "n_test", "limited",
            "test_items_sha256", "adapter_sha256", "constrained"}


def test_gate_end_to_end_pass_writes_the_contract(tmp_path: Path, task: Task) -> None:
    from honed.gating import gate

    run = _planted_run(tmp_path, task, lambda r: "NONE", lambda r: r["expected"])
    result = gate(run)
    doc = json.loads((run / "gate.json").read_text())
    assert doc == json.loads(json.dumps(result.doc)) and set(doc) == CONTRACT
    assert result.passed and doc["status"] == "PASS" and [c["name"] for c in doc["checks"]] == [
        "improvement", "forgetting", "collapse", "latency", "min_value"]
    assert doc["min_value"] is None and "states no absolute bar" in doc["checks"][4]["detail"]
    assert doc["constrained"] == {"base": False, "tuned": False}  # the planted task decodes free
    assert doc["prompt"] == {"base": "base", "tuned": "base"}
    # base answers NONE to all 12 (4 right): F1 of NONE = 2·(1/3)·1/(1/3 + 1) = 0.5, the others 0 → 1/6
    assert doc["base"]["value"] == pytest.approx(1 / 6) and doc["tuned"]["value"] == 1.0
    assert doc["relative_improvement"] == pytest.approx(5.0) and doc["threshold"] == pytest.approx(1 / 6 * 1.1)
    assert doc["difference_ci"][0] > 0 and doc["n_items"] == 12 and doc["vs_arm"] is None
    assert doc["base"]["model_sha256"] and doc["tuned"]["adapter"] == str(run / "best")
    assert doc["checks"][1]["base_nll"] == 2.0 and doc["checks"][1]["tuned_nll"] == 2.1
    # bound to what it gated: the whole locked test and best/ as it was evaluated
    from honed.backends.transformers import adapter_sha256
    from honed.task.data import items_hash

    assert (doc["limited"], doc["n_test"]) == (False, 12)
    assert doc["test_items_sha256"] == items_hash(load_items(task, "test"))
    assert doc["adapter_sha256"] == adapter_sha256(run / "best")


def test_gate_fails_collapse_forgetting_and_latency(tmp_path: Path) -> None:
    from honed.gating import gate

    toml = CLASSIFY_TOML + "[acceptance]\nmax_p95_latency_ms = 1.0\nmax_forgetting = 0.1\n"
    task = load_task(write_task(tmp_path / "t", toml, {"test": ROWS}))
    # tuned answers "billing" to 11 of 12: a collapse (the test's top answer is a third of it)
    run = _planted_run(tmp_path, task, lambda r: "NONE", lambda r: "billing" if r["id"] != "i1" else "shipping",
                       nll=(2.0, 2.5))
    doc = gate(run).doc
    failed = {c["name"] for c in doc["checks"] if not c["passed"]}
    assert doc["status"] == "FAIL" and failed == {"improvement", "forgetting", "collapse", "latency"}
    collapse = doc["checks"][2]
    assert collapse["top_answer"] == "billing" and collapse["top_share"] == pytest.approx(11 / 12)
    assert doc["checks"][1]["relative_change"] == pytest.approx(0.25)


def test_gate_holds_the_tuned_model_to_the_tasks_own_bar(tmp_path: Path) -> None:
    from honed.gating import gate

    task = load_task(write_task(tmp_path / "t", CLASSIFY_TOML + "[acceptance]\nmin_value = 0.8\n", {"test": ROWS}))
    # tuned right on 8 of 12 (the 4 billing items answered NONE): a big gain over a NONE-only base, but below
    # the task's 0.8 — macro-F1: billing 0, shipping 1, NONE 2·(1/2)·1/(1/2 + 1) = 2/3 → (0 + 1 + 2/3) / 3 = 5/9
    run = _planted_run(tmp_path, task, lambda r: "NONE",
                       lambda r: "NONE" if r["expected"] == "billing" else r["expected"])
    doc = gate(run).doc
    failed = [c["name"] for c in doc["checks"] if not c["passed"]]
    assert doc["tuned"]["value"] == pytest.approx(5 / 9) and doc["status"] == "FAIL" and failed == ["min_value"]
    bar = doc["checks"][4]
    assert bar["min_value"] == 0.8 and "not good enough to ship" in bar["detail"]
    assert doc["threshold"] == 0.8 and doc["min_value"] == 0.8  # the package's acceptance minimum is the bar
    ok = _planted_run(tmp_path / "ok", task, lambda r: "NONE", lambda r: r["expected"])
    assert gate(ok).passed


def test_gate_holds_other_metrics_to_their_own_bars(tmp_path: Path) -> None:
    """`[acceptance] min_metrics`: a bar per metric beside the primary one, each a check of its own."""
    from honed.gating import gate

    toml = CLASSIFY_TOML + "[acceptance]\nmin_metrics = { accuracy = 0.9, macro_f1 = 0.5 }\n"
    task = load_task(write_task(tmp_path / "t", toml, {"test": ROWS}))
    assert task.spec.acceptance.min_metrics == {"accuracy": 0.9, "macro_f1": 0.5}
    # right on 8 of 12 (the 4 billing items answered NONE): accuracy 2/3 < 0.9; macro-F1 5/9 ≥ 0.5
    run = _planted_run(tmp_path, task, lambda r: "NONE",
                       lambda r: "NONE" if r["expected"] == "billing" else r["expected"])
    doc = gate(run).doc
    bars = [c for c in doc["checks"] if c["name"] == "min_metric"]
    assert [(c["metric"], c["passed"]) for c in bars] == [("accuracy", False), ("macro_f1", True)]
    assert bars[0]["tuned"] == pytest.approx(2 / 3) and bars[0]["min_value"] == 0.9
    assert "tuned accuracy 0.667" in bars[0]["detail"] and "< the task's bar 0.900" in bars[0]["detail"]
    assert doc["status"] == "FAIL" and [c["name"] for c in doc["checks"] if not c["passed"]] == ["min_metric"]
    ok = _planted_run(tmp_path / "ok", task, lambda r: "NONE", lambda r: r["expected"])
    assert gate(ok).passed

    odd = load_task(write_task(tmp_path / "o", CLASSIFY_TOML + "[acceptance]\nmin_metrics = { entity_f1 = 0.8 }\n",
                               {"test": ROWS}))
    run2 = _planted_run(tmp_path / "b", odd, lambda r: "NONE", lambda r: r["expected"])
    with pytest.raises(UserError, match=r"min_metrics names 'entity_f1' is not a metric of a classify "
                                        r"task's results here; this one reports .*accuracy"):
        gate(run2)
    assert not (run2 / "gate.json").exists()
    # refused before the model is looked at: a run whose base model changed still gets the bar's error first
    run3 = _planted_run(tmp_path / "c", odd, lambda r: "NONE", lambda r: r["expected"], trained_sha="0" * 64)
    with pytest.raises(UserError, match="min_metrics names 'entity_f1'"):
        gate(run3)
    with pytest.raises(Exception, match="min_metrics"):
        load_task(write_task(tmp_path / "n", CLASSIFY_TOML + "[acceptance]\nmin_metrics = { accuracy = -1 }\n",
                             {"test": ROWS}))


def test_gate_refuses_a_changed_base_and_an_undefined_metric(tmp_path: Path) -> None:
    from honed.gating import gate

    task = load_task(write_task(tmp_path / "t", CLASSIFY_TOML, {"test": ROWS}))
    run = _planted_run(tmp_path / "a", task, lambda r: "NONE", lambda r: r["expected"], trained_sha="0" * 64)
    with pytest.raises(UserError, match="the base model changed since `honed tune`"):
        gate(run)
    odd = load_task(write_task(tmp_path / "o", CLASSIFY_TOML + '[acceptance]\nprimary_metric = "field_f1"\n',
                               {"test": ROWS}))
    run2 = _planted_run(tmp_path / "b", odd, lambda r: "NONE", lambda r: r["expected"])
    with pytest.raises(UserError, match="primary_metric 'field_f1' is not a metric"):
        gate(run2)
    assert not (run2 / "gate.json").exists()


def test_cli_exit_codes_and_json(tmp_path: Path, task: Task, honed_home: Path) -> None:
    env = {**os.environ, "HONED_HOME": str(honed_home), "COLUMNS": "200"}
    run = _planted_run(tmp_path, task, lambda r: "NONE", lambda r: r["expected"])
    ok = subprocess.run([sys.executable, "-m", "honed", "gate", str(run), "--json"], capture_output=True, text=True,
                        env=env, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "PASS"
    table = subprocess.run([sys.executable, "-m", "honed", "gate", str(run)], capture_output=True, text=True,
                           env=env, check=False)
    assert table.returncode == 0 and "PASS" in table.stdout and "forgetting" in table.stdout
    assert "honed export" in table.stdout
    bad = _planted_run(tmp_path / "bad", task, lambda r: r["expected"], lambda r: "NONE")
    fail = subprocess.run([sys.executable, "-m", "honed", "gate", str(bad), "--json"], capture_output=True,
                          text=True, env=env, check=False)
    assert fail.returncode == 1 and json.loads(fail.stdout)["status"] == "FAIL"


def _export_refusal(run: Path) -> str:
    """The UserError `honed export` raises for this run, before it merges anything."""
    from honed.exporting.export import export

    with pytest.raises(UserError) as err:
        export(run)
    return str(err.value)


def _bound_entry(run: Path, task: Task, force: bool = False) -> dict:
    """read_gate with the hashes export computes for the run as it is now."""
    from honed.backends.transformers import adapter_sha256
    from honed.exporting.export import read_gate
    from honed.task.data import items_hash

    return read_gate(run, force, adapter_sha256=adapter_sha256(run / "best"),
                     test_items_sha256=items_hash(load_items(task, "test")))[1]


def test_export_refuses_a_gate_run_with_limit(tmp_path: Path, task: Task, honed_home: Path) -> None:
    from honed.gating import gate

    run = _planted_run(tmp_path, task, lambda r: "NONE", lambda r: r["expected"], limit=5)
    doc = gate(run, limit=5).doc
    # a PASS on 5 items (base 1 of 5 right on NONE, tuned 5 of 5): a real verdict, but on a part of the test
    assert doc["status"] == "PASS" and (doc["limited"], doc["n_items"], doc["n_test"]) == (True, 5, 12)
    gate_file = run.resolve() / "gate.json"
    assert _export_refusal(run) == (
        f"{gate_file}: not a verdict on this run as it is now (it ran on 5 of 12 test items (--limit)); re-run "
        f"`honed gate {run.resolve()}` (or export anyway with --force, recorded in the package)")
    env = {**os.environ, "HONED_HOME": str(honed_home), "COLUMNS": "400"}
    cli = subprocess.run([sys.executable, "-m", "honed", "export", str(run)], capture_output=True, text=True,
                         env=env, check=False)
    lines = [line for line in cli.stderr.splitlines() if line.strip()]
    assert cli.returncode == 2 and len(lines) == 1 and "it ran on 5 of 12 test items (--limit)" in lines[0]
    forced = _bound_entry(run, task, force=True)
    assert (forced["forced"], forced["overrode"]) == (True, "a gate not bound to this run")
    assert forced["unbound"] == ["it ran on 5 of 12 test items (--limit)"]
    # control: the same run gated on the whole test is bound, and export would go on
    assert gate(run).doc["limited"] is False
    entry = _bound_entry(run, task)
    assert entry["forced"] is False and "unbound" not in entry and "overrode" not in entry


def test_export_refuses_a_gate_whose_adapter_or_test_changed(tmp_path: Path, task: Task) -> None:
    from honed.backends.transformers import adapter_sha256
    from honed.gating import gate

    run = _planted_run(tmp_path, task, lambda r: "NONE", lambda r: r["expected"])
    gated = gate(run).doc["adapter_sha256"]
    assert _bound_entry(run, task)["forced"] is False  # control: untouched, the gate vouches for the run
    (run / "best" / "adapter_config.json").write_text('{"r": 16}')  # best/ replaced after the gate
    now = adapter_sha256(run / "best")
    assert now != gated
    assert _export_refusal(run) == (
        f"{run.resolve() / 'gate.json'}: not a verdict on this run as it is now (it gated adapter {gated[:12]}… but "
        f"best/ is now {now[:12]}…); re-run `honed gate {run.resolve()}` (or export anyway with --force, recorded "
        "in the package)")
    (run / "best" / "adapter_config.json").write_text('{"r": 8}')  # back to what was gated
    assert _bound_entry(run, task)["forced"] is False
    # the test set edited after the gate (no lock in this task, so only the gate's hash can tell)
    test = task.split_path("test")
    test.write_text(test.read_text().replace('"id": "i0", "text": "message 0"', '"id": "i0", "text": "message 00"'))
    assert "it gated test items " in _export_refusal(run) and "but the task's locked test is now" in _export_refusal(run)


def test_export_refuses_a_gate_that_recorded_no_binding(tmp_path: Path, task: Task) -> None:
    from honed.gating import gate

    run = _planted_run(tmp_path, task, lambda r: "NONE", lambda r: r["expected"])
    doc = gate(run).doc
    for key in ("limited", "n_test", "adapter_sha256", "test_items_sha256"):
        del doc[key]
    (run / "gate.json").write_text(json.dumps(doc))  # a gate.json written before gates were bound
    assert ("(it does not say whether it ran on the whole test set (a gate from before honed recorded it); it "
            "records no adapter sha256; it records no test set hash)") in _export_refusal(run)


def test_a_run_that_never_finished_cannot_be_gated_or_exported(tmp_path: Path, task: Task, honed_home: Path) -> None:
    """The state a SIGKILL leaves (status.json still "running", no summary.json, a best/ from an early pass):
    refused by gate and export alike, naming --resume. The real kill is tests/integration/test_tune_resume.py."""
    from honed.gating import gate

    run = _planted_run(tmp_path, task, lambda r: "NONE", lambda r: r["expected"])
    assert gate(run).passed  # control: finished, it gates
    write_status(run, "running")
    doc = json.loads((run / "status.json").read_text())
    doc["pid"] = 2 ** 22 + 12345  # beyond any pid_max: the process that wrote it is gone
    (run / "status.json").write_text(json.dumps(doc))
    (run / "summary.json").unlink()
    message = (f"{run}: the tune run never finished (status.json still says 'running': the process was killed or "
               f"crashed before the end); gate and export take a finished run: continue it with "
               f"`honed tune --resume {run}`")
    with pytest.raises(UserError) as err:
        gate(run)
    assert str(err.value) == message
    assert _export_refusal(run) == message.replace(str(run), str(run.resolve()))
    env = {**os.environ, "HONED_HOME": str(honed_home), "COLUMNS": "400"}
    for command in ("gate", "export"):
        cli = subprocess.run([sys.executable, "-m", "honed", command, str(run)], capture_output=True, text=True,
                             env=env, check=False)
        lines = [line for line in cli.stderr.splitlines() if line.strip()]
        assert cli.returncode == 2 and len(lines) == 1 and "never finished" in lines[0], (command, cli.stderr)
    doc["pid"] = os.getppid()  # a live process (pytest's parent) that is not us: still running
    (run / "status.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=rf"the tune run is still running \(pid {os.getppid()}, status.json: running\)"):
        gate(run)


def test_the_metrics_a_bar_may_name_are_known_before_any_model_answers() -> None:
    from honed.evaluate.scoring import metric_names
    from honed.task.data import load_items
    from tests.conftest import EXAMPLES

    extract, classify = load_task(EXAMPLES / "extract"), load_task(EXAMPLES / "classify")
    names = metric_names(extract, load_items(extract, "test")[0])
    assert {"record_f1", "entity_f1", "relationship_f1", "relationship_unchecked_f1", "valid_json_rate",
            "relationships_dropped"} <= names and not {"per_field", "accuracy_ci"} & names
    names = metric_names(classify, load_items(classify, "test")[0])
    assert {"accuracy", "macro_f1"} <= names and "entity_f1" not in names and "confusion" not in names
