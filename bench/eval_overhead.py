"""Harness overhead of `honed eval`, measured side by side in one run.

1. items/s of honed's evaluate() (fresh cache: every item really generated, parsed, scored, stored) against a
   plain llama-cpp-python loop (`create_chat_completion`, same model file, same messages, greedy, same
   max_tokens), rounds interleaved raw/honed so drift of the machine hits both alike; answers compared.
2. items/s of evaluate() against a real `python -m llama_cpp.server` (openai backend) at concurrency 1, 2, 4.

    .venv/bin/python bench/eval_overhead.py [--task examples/classify] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from honed.backends import open_backend
from honed.backends.models import resolve_gguf
from honed.evaluate.runner import evaluate, sampling_for
from honed.store import Store
from honed.task.data import load_items
from honed.task.prompt import build_messages
from honed.task.spec import load_task


def raw_loop(model_path: Path, task, items, threads: int) -> tuple[float, list[str]]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_path), n_ctx=4096, n_threads=threads, verbose=False)
    s = sampling_for(task, 0)
    texts = []
    t0 = time.perf_counter()
    for item in items:
        msgs = [m.as_dict() for m in build_messages(task, item.inputs)]
        out = llm.create_chat_completion(msgs, max_tokens=s.max_tokens, temperature=0.0, top_k=0, min_p=0.0,
                                         repeat_penalty=1.0, seed=s.seed)
        texts.append(out["choices"][0]["message"]["content"] or "")
    elapsed = time.perf_counter() - t0
    llm.close()
    return len(items) / elapsed, texts


def honed_loop(task, items, backend_name: str, model: str, concurrency: int = 1, **options) -> tuple[float, list]:
    with tempfile.TemporaryDirectory() as home, open_backend(backend_name, model, **options) as be:
        store = Store(Path(home))
        t0 = time.perf_counter()
        result = evaluate(task, be, "test", items=items, store=store, concurrency=concurrency, write_run=True)
        elapsed = time.perf_counter() - t0
        store.close()
    assert result.document.cache.hits == 0
    return len(items) / elapsed, [r.text for r in result.records]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="examples/classify")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    task = load_task(args.task)
    items = load_items(task, "test")
    path = resolve_gguf(args.model)
    raw_rates, honed_rates = [], []
    same = None
    for r in range(args.rounds):
        rate_raw, raw_texts = raw_loop(path, task, items, args.threads)
        rate_honed, honed_texts = honed_loop(task, items, "llamacpp", args.model, n_threads=args.threads)
        raw_rates.append(rate_raw)
        honed_rates.append(rate_honed)
        same = sum(a == b for a, b in zip(raw_texts, honed_texts))
        print(f"round {r + 1}: raw {rate_raw:.3f} items/s · honed {rate_honed:.3f} items/s · "
              f"ratio {rate_honed / rate_raw:.3f} · identical answers {same}/{len(items)}", flush=True)
    result = {
        "task": task.name, "n_items": len(items), "model": str(path), "threads": args.threads,
        "raw_items_per_s": raw_rates, "honed_items_per_s": honed_rates,
        "ratio_median": statistics.median(h / r for h, r in zip(honed_rates, raw_rates)),
        "identical_answers": same,
    }
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
                               "--port", str(port), "--n_ctx", "4096", "--n_threads", str(args.threads)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx

        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        server_rates = {}
        for k in (1, 2, 4):
            rate, _ = honed_loop(task, items, "openai", "smollm2", concurrency=k,
                                 base_url=f"http://127.0.0.1:{port}/v1")
            server_rates[k] = rate
            print(f"llama_cpp.server, concurrency {k}: {rate:.3f} items/s", flush=True)
        result["server_items_per_s"] = server_rates
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
