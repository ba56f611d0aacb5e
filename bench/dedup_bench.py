"""Near-duplicate detection throughput on synthetic records (honed.data.dedup: datasketch MinHash/LSH).

100k synthetic support-ticket-like records (60–160 characters), of which 2% are planted near copies of other
records: re-cased and re-punctuated (Jaccard ~1.0), a word swapped (~0.8), a word dropped (~0.85). Measures:

1. dedupe: every near-duplicate pair inside the 100k (what `generate`/`split` do), with planted-pair recall;
2. check:  a 10% "test" slice against the other 90% (what `honed data check` does).

    .venv/bin/python bench/dedup_bench.py [--n 100000] [--threshold 0.7] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time

from honed.data.dedup import cross_duplicates, within_duplicates

GREETINGS = [
    "hi",
    "hello",
    "hey team",
    "good morning",
    "dear support",
    "hiya",
    "",
    "",
    "urgent:",
    "quick one:",
]
PROBLEMS = [
    "was charged twice for",
    "never received",
    "cannot log in to manage",
    "got a broken",
    "want to return",
    "need an invoice for",
    "was refused a refund on",
    "see an error when paying for",
    "lost tracking of",
    "would like to cancel",
]


def _vocab(rng: random.Random, n: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def make_records(
    n: int, planted_share: float = 0.02, seed: int = 0
) -> tuple[list[str], set[tuple[int, int]]]:
    """(texts, planted pairs (original index, copy index))."""
    rng = random.Random(seed)
    vocab = _vocab(rng)
    n_planted = int(n * planted_share)
    texts = []
    for i in range(n - n_planted):
        words = " ".join(rng.choice(vocab) for _ in range(rng.randint(6, 16)))
        texts.append(
            f"{rng.choice(GREETINGS)} I {rng.choice(PROBLEMS)} my {words} "
            f"(order {rng.randint(1, 10**6)})".strip()
        )
    planted = set()
    for _ in range(n_planted):
        src = rng.randrange(len(texts) - 1) if texts else 0
        words = texts[src].split()
        kind = rng.randrange(3)
        if kind == 0:
            copy = texts[src].upper().replace("(", "[").replace(")", "]") + "!!"
        elif kind == 1:
            j = rng.randrange(len(words))
            words[j] = rng.choice(vocab)
            copy = " ".join(words)
        else:
            del words[rng.randrange(len(words))]
            copy = " ".join(words)
        planted.add((src, len(texts)))
        texts.append(copy)
    return texts, planted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    texts, planted = make_records(args.n)
    pairs = [(i, t) for i, t in enumerate(texts)]
    t0 = time.perf_counter()
    found = within_duplicates(pairs, args.threshold)
    dedupe_s = time.perf_counter() - t0
    got = {(min(m.key, m.other), max(m.key, m.other)) for m in found}  # type: ignore[type-var]
    # a planted copy may fall under the threshold (a swapped word in a short record): recall is over those
    # whose true Jaccard reaches it, which the verifier computes exactly
    from honed.data.dedup import jaccard, shingles

    copies = {c for _, c in planted}
    reachable = {
        p for p in planted if jaccard(shingles(texts[p[0]]), shingles(texts[p[1]])) >= args.threshold
    }
    recall = len(reachable & got) / len(reachable) if reachable else 1.0

    cut = int(len(texts) * 0.9)
    rng = random.Random(1)
    order = list(range(len(texts)))
    rng.shuffle(order)
    train = [(i, texts[i]) for i in order[:cut]]
    test = [(i, texts[i]) for i in order[cut:]]
    t1 = time.perf_counter()
    cross = cross_duplicates(train, test, args.threshold)
    check_s = time.perf_counter() - t1

    doc = {
        "records": len(texts),
        "mean_chars": round(sum(map(len, texts)) / len(texts), 1),
        "threshold": args.threshold,
        "dedupe_s": round(dedupe_s, 2),
        "dedupe_records_per_s": round(len(texts) / dedupe_s),
        "pairs_found": len(found),
        "planted": len(planted),
        "planted_reaching_threshold": len(reachable),
        "planted_recall": round(recall, 4),
        # pairs not planted: two copies of one record, or a copy of a copy; "between_originals" would be
        # two independently generated records that happen to be near duplicates
        "unplanted_pairs": len(got - planted),
        "unplanted_between_originals": sum(
            1 for a, b in got - planted if a not in copies and b not in copies
        ),
        "check_s": round(check_s, 2),
        "check_pairs": len(cross),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
    }
    print(json.dumps(doc, indent=2))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)


if __name__ == "__main__":
    main()
