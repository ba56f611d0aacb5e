"""Load test of `honed serve`: requests/s and P50/P95 latency at several concurrencies, side by side.

Starts `honed serve smollm2-135m --task examples/classify` on 127.0.0.1 (a free port, a fresh request log),
warms it up, then for each concurrency level runs that many closed-loop clients against the task route
(`POST /v1/tasks/support-triage`, the 40 test-split messages in turn) for a fixed time. Counts every
response by status and checks that the request log grew by exactly the number of 200s, each line a whole
record. Loopback only; the clients run on the same 2 cores as the server, so they cost it a little.

    .venv/bin/python bench/serve_load.py --duration 20 --levels 1 4 16 --json /tmp/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TASK_DIR = REPO / "examples" / "classify"
TASK = "support-triage"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    port, log = _free_port(), workdir / "requests.jsonl"
    cmd = [sys.executable, "-m", "honed", "serve", "smollm2-135m", "--task", str(TASK_DIR), "--port", str(port),
           "--log", str(log), "--rate-limit", "0", "--timeout", "300", "--threads", "2", *extra]
    out = (workdir / "server.out").open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=out, env={**os.environ, "HONED_HOME": str(workdir / "home"),
                                                              "OMP_WAIT_POLICY": "PASSIVE"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"honed serve exited:\n{(workdir / 'server.out').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url, log
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("honed serve did not start")


def count_lines(log: Path) -> int:
    if not log.exists():
        return 0
    lines = log.read_bytes().splitlines()
    for line in lines:
        json.loads(line)  # every line a whole record, or this raises
    return len(lines)


def run_level(url: str, texts: list[str], clients: int, seconds: float) -> dict[str, object]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    start = time.monotonic()
    end = start + seconds

    def client(k: int) -> None:
        with httpx.Client(timeout=300) as c:
            i = k
            while time.monotonic() < end:
                t0 = time.perf_counter()
                try:
                    status = str(c.post(f"{url}/v1/tasks/{TASK}", json={"input": {"text": texts[i % len(texts)]}})
                                 .status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                dt = time.perf_counter() - t0
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == "200":
                        latencies.append(dt)
                i += clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start  # includes the requests still finishing after the deadline
    lat = np.asarray(latencies) * 1000
    return {"concurrency": clients, "seconds": round(wall, 1), "ok": len(latencies), "statuses": statuses,
            "requests_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--confidence", default="margin", choices=["margin", "consistency", "none"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    texts = [json.loads(line)["text"] for line in (TASK_DIR / "data" / "test.jsonl").read_text().splitlines()]
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, log = start_server(Path(tmp), ["--confidence", args.confidence])
        try:
            run_level(url, texts, 1, 3.0)  # warm-up: the task prompt's shared prefix lands in the KV cache
            rows = []
            for level in args.levels:
                before, load = count_lines(log), os.getloadavg()[0]
                row = run_level(url, texts, level, args.duration)
                row["log_lines_added"] = count_lines(log) - before
                row["log_matches_200s"] = row["log_lines_added"] == row["ok"]
                row["load_avg_1m_before"] = round(load, 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    print("\n| concurrency | requests/s | P50 ms | P95 ms | 200s | other | log lines = 200s | load avg |\n"
          "|---:|---:|---:|---:|---:|---:|:---:|---:|")
    for r in rows:
        other = sum(v for k, v in r["statuses"].items() if k != "200")  # type: ignore[union-attr]
        print(f"| {r['concurrency']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['ok']} | {other} "
              f"| {'yes' if r['log_matches_200s'] else 'NO'} | {r['load_avg_1m_before']} |")
    if args.json:
        args.json.write_text(json.dumps({"confidence": args.confidence, "duration_s": args.duration,
                                         "cpus": os.cpu_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
