"""`export(run)`: a gated tune run → a delivery package (layout: `honed.exporting.package`).

Stages, each timed into the manifest: gate check → merge → convert (F16 GGUF) → quantize → template round trip
(training vs every GGUF vs the Modelfile; fails loudly) → ladder (every rung on the locked test, the rung
chosen by task score) → package → `ollama create` (where Ollama is installed) → manifest.

Everything is built in `.{name}.partial/` beside the target and renamed into place at the end, the manifest
written last: a crash never leaves a folder that looks like a package. The partial folder keeps the merged
checkpoint, the F16 GGUF and the rungs (with their inputs' hashes) so a re-run after a failure redoes only what
changed; evaluations come from the response cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from honed.backends.models import file_sha256
from honed.errors import UserError
from honed.exporting.docs import render_benchmarks, render_usage
from honed.exporting.package import (
    MANIFEST,
    TASK_DIR,
    Acceptance,
    Anchor,
    Manifest,
    Package,
    Rung,
    write_anchors,
    write_manifest,
)
from honed.gating.document import GATE_FILE, GateDocument, read_gate_document
from honed.gating.run import read_tune_run
from honed.store import write_json_atomic, write_text_atomic
from honed.task.data import Item, items_hash, load_items
from honed.task.spec import Task, load_task

DEFAULT_QUANTS = ("Q8_0", "Q4_K_M")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str) -> str:
    return _SAFE.sub("-", text).strip("-") or "model"


def gate_binding_problems(gate: GateDocument, adapter_sha256: str, test_items_sha256: str) -> list[str]:
    """Why a gate.json is not a verdict on this run as it is now: a partial (`--limit`) gate, another adapter than
    best/, another test set than the task's locked one, or a gate that recorded none of these. Empty when bound."""
    problems = []
    if gate.limited is not False:
        if gate.limited:
            problems.append(f"it ran on {gate.n_items} of {gate.n_test} test items (--limit)")
        else:
            problems.append("it does not say whether it ran on the whole test set (a gate from before honed "
                            "recorded it)")
    gated_adapter, gated_test = gate.adapter_sha256, gate.test_items_sha256
    if not gated_adapter:
        problems.append("it records no adapter sha256")
    elif gated_adapter != adapter_sha256:
        problems.append(f"it gated adapter {str(gated_adapter)[:12]}… but best/ is now {adapter_sha256[:12]}…")
    if not gated_test:
        problems.append("it records no test set hash")
    elif gated_test != test_items_sha256:
        problems.append(f"it gated test items {str(gated_test)[:12]}… but the task's locked test is now "
                        f"{test_items_sha256[:12]}…")
    return problems


def read_gate(run: Path, force: bool, *, adapter_sha256: str, test_items_sha256: str
              ) -> tuple[GateDocument | None, dict[str, Any]]:
    """(gate.json or None, the manifest's `gate` entry). Refuses, unless forced, a missing or failed gate and a gate
    that is not about this run as it is now (`gate_binding_problems`: limited, another adapter or test set)."""
    path = run / GATE_FILE
    if not path.is_file():
        if not force:
            raise UserError(f"{run}: no {GATE_FILE}: run `honed gate {run}` first (or export anyway with --force, "
                            "recorded in the package)")
        return None, {"status": None, "forced": True, "overrode": "no gate run"}
    gate = read_gate_document(path)
    status, failed = gate.status, gate.failed_checks
    if status != "PASS" and not force:
        listing = "; ".join(f"{c.name}: {c.detail}" for c in failed) or "no check passed"
        raise UserError(f"{run}: the gate FAILED ({listing}); export refused — fix the fine-tune, or ship it anyway "
                        "with --force (recorded in the package manifest)")
    unbound = gate_binding_problems(gate, adapter_sha256, test_items_sha256)
    if unbound and not force:
        raise UserError(f"{path}: not a verdict on this run as it is now ({'; '.join(unbound)}); re-run "
                        f"`honed gate {run}` (or export anyway with --force, recorded in the package)")
    # the whole gate.json (usage.md and benchmarks.md read its CIs and eval runs) plus the override, if any
    entry = {**gate.as_json(), "forced": status != "PASS" or bool(unbound), "failed_checks": [c.name for c in failed]}
    if status != "PASS":
        entry["overrode"] = status
    elif unbound:
        entry["overrode"] = "a gate not bound to this run"
    if unbound:
        entry["unbound"] = unbound
    return gate, entry


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _base_ref(base: dict[str, Any]) -> str:
    path = base.get("path")
    return str(path) if path and Path(path).exists() else str(base["name"])


def _base_label(name: str) -> str:
    stem = Path(name).name.removesuffix(".gguf")
    stem = re.sub(r"[.-](Q\d\w*|F16|BF16|F32)$", "", stem, flags=re.IGNORECASE)
    return _safe(stem).lower()


def _stage(timings: dict[str, float], name: str, say: Callable[[str], None], msg: str) -> Callable[[], None]:
    say(msg)
    t0 = time.perf_counter()

    def done() -> None:
        timings[name] = round(time.perf_counter() - t0, 2)
    return done


def _convert(merged: Any, work: Path) -> tuple[Path, dict[str, Any]]:
    """The F16 GGUF, reused when the merged checkpoint it came from is the same."""
    from honed.exporting.convert import convert_to_gguf

    f16 = work / "model.F16.gguf"
    stamp = work / "model.F16.json"
    key = {"base_sha256": merged.base_sha256, "adapter_sha256": merged.adapter_sha256}
    if f16.exists() and stamp.exists() and json.loads(stamp.read_text())["key"] == key:
        return f16, json.loads(stamp.read_text())["converted"]
    for old in work.glob("model.*.gguf"):  # rungs of another merge are stale
        old.unlink()
    c = convert_to_gguf(merged.path, f16)
    info = {"seconds": round(c.seconds, 2), "gguf_py": c.gguf_py, "converter": c.converter}
    write_json_atomic(stamp, {"key": key, "converted": info})
    return f16, info


def _system_text(task: Task, item: Item, training_prompt: str) -> str | None:
    """SYSTEM for the Modelfile: the task's system prompt, else the system turn the chat template adds on its own
    (SmolLM2's and Qwen's templates insert a default one), so Ollama renders what training rendered."""
    from honed.task.prompt import build_messages

    msgs = build_messages(task, item.inputs)
    own = next((m.content for m in msgs if m.role == "system"), None)
    if own:
        return own
    m = re.match(r"(?:<\|endoftext\|>)?<\|im_start\|>system\n(.*?)<\|im_end\|>", training_prompt, re.DOTALL)
    return m.group(1) if m else None


def _copy_task(task: Task, dest: Path) -> None:
    """task/honed.toml (its [data] test pointed at data/test.jsonl) + the test file, its lock and any schema."""
    from honed.data.lock import lock_path

    dest.mkdir(parents=True)
    (dest / "data").mkdir()
    test = task.split_path("test")
    shutil.copy2(test, dest / "data" / "test.jsonl")
    lock = lock_path(task)
    if lock.exists():
        shutil.copy2(lock, dest / "data" / "test.lock.json")
    assert task.source is not None
    text = task.source.read_text(encoding="utf-8")
    rel = task.spec.data.test
    if rel != "data/test.jsonl":
        pattern = re.compile(r"^(\s*test\s*=\s*)(['\"]).*?\2", re.MULTILINE)
        if not pattern.search(text):
            raise UserError(f"{task.source}: cannot point [data] test at the package's data/test.jsonl (write it "
                            "as `test = \"...\"` under [data])")
        text = pattern.sub(lambda m: f'{m.group(1)}"data/test.jsonl"', text, count=1)
    (dest / "honed.toml").write_text(text, encoding="utf-8")
    if task.spec.extract and task.spec.extract.schema_file:
        src = task.root / task.spec.extract.schema_file
        (dest / task.spec.extract.schema_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / task.spec.extract.schema_file)
    load_task(dest)  # the copy must load on its own (serve, monitor, verify read it)


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem: copy
        shutil.copy2(src, dst)


def _docs(root: Path, manifest: Manifest, task: Task, gate: GateDocument | None, ladder: dict[str, Any],
          ladder_md: str) -> list[str]:
    """usage.md and benchmarks.md; without a gate.json (a forced export) benchmarks.md has only the ladder."""
    notes = []
    usage = render_usage(root, manifest, task)
    if gate is not None:
        bench = render_benchmarks(root, manifest, gate.as_json(), ladder)
    else:
        notes.append("benchmarks.md has only the quant ladder (no gate.json: the export was forced)")
        bench = f"# Benchmarks: {manifest.task} {manifest.version}\n\nNo gate ran.\n\n## Quant ladder\n\n{ladder_md}"
    write_text_atomic(root / "usage.md", usage)
    write_text_atomic(root / "benchmarks.md", bench)
    return notes


def export(run: Path, *, out: Path | None = None, quants: list[str] | None = None, force: bool = False,
           modelfile: Path | None = None, version: str | None = None, n_anchors: int = 16,
           on_stage: Callable[[str], None] | None = None) -> Package:
    """Export a tune run as a delivery package. See the module docstring for the stages."""
    from honed.exporting import ladder as lad
    from honed.exporting import modelfile as mfm
    from honed.exporting.merge import merge_adapter
    from honed.exporting.template import round_trip, training_side, training_tokenizer

    say = on_stage or (lambda _m: None)
    run = Path(run).resolve()
    timings: dict[str, float] = {}
    tune_manifest, task, adapter = read_tune_run(run)
    from honed.backends.transformers import adapter_sha256

    a_sha = adapter_sha256(adapter)
    test_items = load_items(task, "test")  # verifies the lock: a package must not carry an edited test set
    gate, gate_entry = read_gate(run, force, adapter_sha256=a_sha, test_items_sha256=items_hash(test_items))
    quants = list(quants) if quants is not None else list(DEFAULT_QUANTS)
    from honed.exporting.quantize import QUANT_TYPES

    bad = [q for q in quants if q.upper() not in QUANT_TYPES]
    if bad:
        raise UserError(f"--quants: unknown {', '.join(bad)}; expected some of {', '.join(QUANT_TYPES)}")
    user_mf = mfm.parse_modelfile(Path(modelfile)) if modelfile is not None else None
    anchors = test_items[:n_anchors]
    base = tune_manifest["base_model"]
    base_ref = _base_ref(base)
    version = _safe(version) if version else a_sha[:8]
    name = f"{_safe(task.name)}-{_base_label(str(base['name']))}-{version}"
    out = Path(out).resolve() if out else run / "package"
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise UserError(f"{out}: exists and is not a honed package; give an empty or new folder with --out")
    work = out.parent / f".{out.name}.partial"
    work.mkdir(parents=True, exist_ok=True)

    done = _stage(timings, "merge", say, f"merging the adapter into {base['name']}")
    merged = merge_adapter(base_ref, adapter, work / "merged")
    done()
    done = _stage(timings, "convert", say, "converting to an F16 GGUF with llama.cpp's converter")
    f16, converted = _convert(merged, work)
    done()
    done = _stage(timings, "quantize", say, f"quantizing: {', '.join(q.upper() for q in quants) or 'none'}")
    rungs = lad.build_rungs(f16, quants, work)
    done()

    def file_name(quant: str) -> str:
        return f"{name}-{quant}.gguf"

    done = _stage(timings, "round_trip", say, "template round trip: training vs GGUF vs Modelfile")
    tokenizer = training_tokenizer(base_ref)
    tside, _tpl = training_side(task, anchors[0], tokenizer)
    from honed.task.chat import read_gguf
    from honed.train.tokens import token_lengths

    f16_format = read_gguf(f16)
    family_template, eos_text = f16_format.chat_template, f16_format.eos_token
    lengths, _ = token_lengths(task, test_items, str(f16))
    gen = task.spec.generation
    if user_mf is None:
        family = mfm.detect_family(family_template)
        mf = mfm.generate_modelfile(family, from_="./" + file_name("F16"), eos_text=eos_text,
                                    system=_system_text(task, anchors[0], tside.prompt), temperature=gen.temperature,
                                    num_ctx=mfm.num_ctx_for([p for p, _ in lengths], task.max_tokens),
                                    num_predict=task.max_tokens)
    else:
        mf = user_mf
    checked = round_trip(task, anchors, tokenizer, [r.path for r in rungs], mf)
    checked["ggufs"] = [file_name(r.quant) for r in rungs]  # as they are named in the package
    done()

    done = _stage(timings, "ladder", say, f"evaluating {len(rungs)} rungs on {len(test_items)} locked test items")
    min_value = gate.threshold if gate else None
    tol = task.spec.acceptance.max_quant_drop
    ladder, extras = lad.measure_ladder(task, rungs, merged.path, len(anchors), file_name=file_name, tolerance=tol,
                                        min_value=min_value, on_stage=say)
    done()
    recommended = ladder["recommended"]

    done = _stage(timings, "package", say, f"writing the package {out}")
    root = work / "package"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for r in rungs:
        _link(r.path, root / file_name(r.quant))
    shutil.copytree(adapter, root / "adapter")
    _copy_task(task, root / TASK_DIR)
    from honed.evaluate.document import read_eval_run

    rec_row = next(r for r in ladder["rungs"] if r["quant"] == recommended)
    answers = {r.id: r.answer for r in read_eval_run(rec_row["eval_run_dir"]).records}
    write_anchors(root, [Anchor(it.id, it.inputs, it.expected, answers.get(it.id)) for it in anchors])
    write_json_atomic(root / "ladder.json", ladder)
    mf.from_ = "./" + file_name(recommended)
    write_text_atomic(root / "Modelfile", mfm.render_modelfile(
        mf, f"honed export of {task.name} on {base['name']} ({version}); rung {recommended}: {ladder['why']}"))
    acceptance = Acceptance(primary_metric=task.primary_metric,
                            min_value=min_value if min_value is not None else (rec_row["metric"] or 0.0) - tol,
                            max_quant_drop=tol, source="gate.json threshold" if min_value is not None
                            else "no gate: the recommended rung's score minus max_quant_drop")
    data = tune_manifest.get("data", {})
    manifest = Manifest(
        task=task.name, kind=task.kind, version=version,
        base_model={"name": base["name"], "sha256": base.get("sha256"), "path": base.get("path")},
        rungs=[Rung(quant=r["quant"], file=r["file"], metrics={**{k: r[k] for k in lad.RUNG_KEYS[2:]},
                                                               **extras[r["quant"]]}) for r in ladder["rungs"]],
        recommended=recommended, acceptance=acceptance, prompt=task.prompt, gate=gate_entry,
        hashes={k: v for k, v in {
            "train_items_sha256": data.get("train_items_sha256"), "val_items_sha256": data.get("val_items_sha256"),
            "test_items_sha256": items_hash(test_items), "test_file_sha256": file_sha256(task.split_path("test")),
            "config_sha256": tune_manifest.get("config_sha256"), "adapter_sha256": a_sha,
            "base_sha256": merged.base_sha256}.items() if v},
        tune={"run_id": tune_manifest.get("run_id", run.name), "config": _read_json(run / "config.json")},
        run_dir=str(run),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        ladder={"recommended": recommended, "why": ladder["why"], "tolerance": tol, "merged": extras["merged"]},
        round_trip=checked, converter=converted, ollama_model=name.lower(), stages=timings,
    )
    notes = _docs(root, manifest, task, gate, ladder, lad.ladder_markdown(ladder, task.primary_metric))
    done()
    done = _stage(timings, "ollama", say, "ollama create (where Ollama is installed)")
    ollama = mfm.ollama_create(name.lower(), root / "Modelfile")
    done()
    manifest = manifest.model_copy(update={"ollama": ollama, "notes": notes, "stages": timings})
    write_manifest(root, manifest)  # last: only now does the folder look like a package
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.replace(old)
        shutil.rmtree(old, ignore_errors=True)
    root.replace(out)
    shutil.rmtree(work, ignore_errors=True)
    from honed.exporting.package import load_package

    return load_package(out)


__all__ = ["DEFAULT_QUANTS", "export", "gate_binding_problems", "read_gate"]
