"""Exact and near-duplicate detection: content hashes, and MinHash/LSH from datasketch.

Two items are *exact* duplicates when their input fields are equal (`content_hash`: the id and the answer are
left out, so a renamed copy of a test item is still the same item). They are *near* duplicates when the
Jaccard similarity of their character 5-gram sets, after normalisation (case, punctuation, whitespace), is at
least a threshold (default 0.7): "Where is my parcel?" and "where is my parcel??" are one example twice.

MinHash/LSH only proposes candidates; every candidate is verified with the exact Jaccard of the two shingle
sets, so a reported pair is never an artefact of hashing. The LSH index runs a little below the threshold
(`_LSH_SLACK`) so that true pairs near the threshold are not missed by banding.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from honed.store import canonical_json
from honed.task.conversation import looks_like_conversation, transcript

DEFAULT_THRESHOLD = 0.7
"""Jaccard of character 5-grams above which two inputs count as near duplicates."""
NUM_PERM = 128
NGRAM = 5
_LSH_SLACK = 0.1
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def content_hash(inputs: dict[str, Any]) -> str:
    """sha256 of an item's input fields (not its id, not its answer), in canonical JSON."""
    return hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()


def item_text(inputs: dict[str, Any]) -> str:
    """The text that near-duplicate detection compares: every input value, in key order."""
    parts = []
    for key in sorted(inputs):
        value = inputs[key]
        parts.append(
            value if isinstance(value, str) else transcript(value) if looks_like_conversation(value)
            else json.dumps(value, ensure_ascii=False, sort_keys=True)
        )
    return "\n".join(parts)


def normalize(text: str) -> str:
    """Lower case, punctuation and whitespace runs folded to one space: differences that do not make a new
    example."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def shingles(text: str, n: int = NGRAM) -> set[bytes]:
    """Character n-grams of the normalised text (the whole text when it is shorter than n)."""
    data = normalize(text).encode("utf-8")
    if len(data) <= n:
        return {data}
    return {data[i : i + n] for i in range(len(data) - n + 1)}


def jaccard(a: set[bytes], b: set[bytes]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class Match:
    """A verified near-duplicate pair: `key` (queried) resembles `other` (indexed) with this Jaccard."""

    key: Hashable
    other: Hashable
    jaccard: float


class NearDuplicateIndex:
    """An LSH index of texts by key. `query` returns indexed keys whose exact Jaccard ≥ threshold.

    Streaming on purpose: a record's shingles live only while it is sketched or verified, so indexing 100k
    records costs the LSH tables and the texts, not 100k shingle sets.
    """

    def __init__(
        self, threshold: float = DEFAULT_THRESHOLD, num_perm: int = NUM_PERM, ngram: int = NGRAM
    ) -> None:
        from datasketch import MinHash, MinHashLSH

        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.ngram = ngram
        # weights favour recall: a missed near duplicate is a silent leak, a false candidate one exact check
        self._lsh = MinHashLSH(
            threshold=max(0.05, threshold - _LSH_SLACK), num_perm=num_perm, weights=(0.1, 0.9)
        )
        # crc32 instead of datasketch's default sha1: as good after MinHash's own mixing, ~10x cheaper, and
        # deterministic across processes (unlike Python's hash()). Copies of one prototype share its
        # permutations, as MinHash.bulk does.
        self._proto = MinHash(num_perm=num_perm, hashfunc=zlib.crc32)
        self._texts: dict[Hashable, str] = {}

    def __len__(self) -> int:
        return len(self._texts)

    def _sketch(self, sh: set[bytes]) -> Any:
        mh = self._proto.copy()
        mh.update_batch(list(sh))
        return mh

    def _add(self, key: Hashable, text: str, mh: Any) -> None:
        if key in self._texts:
            raise ValueError(f"key {key!r} is already indexed")
        self._lsh.insert(key, mh, check_duplication=False)
        self._texts[key] = text

    def _hits(self, sh: set[bytes], mh: Any, exclude: Hashable | None = None) -> list[tuple[Hashable, float]]:
        """Candidates from the LSH, verified with the exact Jaccard of the shingle sets, best first."""
        if not self._texts:
            return []
        found = []
        for other in self._lsh.query(mh):
            if other == exclude:
                continue
            j = jaccard(sh, shingles(self._texts[other], self.ngram))
            if j >= self.threshold:
                found.append((other, round(j, 4)))
        return sorted(found, key=lambda kv: (-kv[1], str(kv[0])))

    def add_many(
        self, pairs: Iterable[tuple[Hashable, str]], advance: Callable[[int], None] | None = None
    ) -> None:
        """Index (key, text) pairs."""
        for key, text in pairs:
            self._add(key, text, self._sketch(shingles(text, self.ngram)))
            if advance is not None:
                advance(1)

    def query(self, text: str, exclude: Hashable | None = None) -> list[tuple[Hashable, float]]:
        """Indexed keys whose text is a near duplicate of `text`, best first, with their exact Jaccard."""
        sh = shingles(text, self.ngram)
        return self._hits(sh, self._sketch(sh), exclude)

    def query_many(
        self, pairs: Iterable[tuple[Hashable, str]], advance: Callable[[int], None] | None = None
    ) -> list[Match]:
        """Every (queried key, indexed key) near-duplicate pair, for many texts at once."""
        matches: list[Match] = []
        for key, text in pairs:
            matches += [Match(key, other, j) for other, j in self.query(text)]
            if advance is not None:
                advance(1)
        return matches

    def query_then_add(self, key: Hashable, text: str) -> list[tuple[Hashable, float]]:
        """Near duplicates of `text` among what is indexed so far; then index it (one sketch for both)."""
        sh = shingles(text, self.ngram)
        mh = self._sketch(sh)
        hits = self._hits(sh, mh)
        self._add(key, text, mh)
        return hits


def cross_duplicates(
    indexed: Sequence[tuple[Hashable, str]],
    queries: Sequence[tuple[Hashable, str]],
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Match]:
    """Pairs (query key, indexed key) whose texts are near duplicates: e.g. test items against train."""
    index = NearDuplicateIndex(threshold)
    index.add_many(indexed)
    return index.query_many(queries)


def within_duplicates(
    pairs: Iterable[tuple[Hashable, str]],
    threshold: float = DEFAULT_THRESHOLD,
    advance: Callable[[int], None] | None = None,
) -> list[Match]:
    """Near-duplicate pairs inside one collection, each once as (earlier key, later key), in input order of
    the
    later one (its best match first)."""
    index = NearDuplicateIndex(threshold)
    found: list[Match] = []
    for key, text in pairs:
        found += [Match(other, key, j) for other, j in index.query_then_add(key, text)]
        if advance is not None:
            advance(1)
    return found


def clusters(
    pairs: Sequence[tuple[Hashable, str]],
    threshold: float = DEFAULT_THRESHOLD,
    advance: Callable[[int], None] | None = None,
) -> list[list[Hashable]]:
    """Groups of keys linked by near duplication (transitively), in input order; singletons included."""
    parent = {key: key for key, _ in pairs}

    def root(k: Hashable) -> Hashable:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for m in within_duplicates(pairs, threshold, advance):
        a, b = root(m.key), root(m.other)
        if a != b:
            parent[b] = a
    groups: dict[Hashable, list[Hashable]] = {}
    for key, _ in pairs:
        groups.setdefault(root(key), []).append(key)
    return list(groups.values())


def dedupe(
    pairs: Sequence[tuple[Hashable, str]], threshold: float = DEFAULT_THRESHOLD
) -> tuple[list[Hashable], dict[Hashable, tuple[Hashable, float]]]:
    """Keep the first of each near-duplicate cluster: (kept keys, {dropped key: (the kept twin, jaccard)})."""
    dropped: dict[Hashable, tuple[Hashable, float]] = {}
    for m in within_duplicates(pairs, threshold):
        if m.key not in dropped and m.other not in dropped:
            dropped[m.other] = (m.key, m.jaccard)
    return [key for key, _ in pairs if key not in dropped], dropped
