"""Finding llama.cpp's converter: HONED_CONVERTER, the cache, and clear errors when neither is there."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from honed.errors import UserError
from honed.exporting import convert

pytestmark = pytest.mark.unit


def _fake_tree(root: Path) -> Path:
    (root / "gguf-py" / "gguf").mkdir(parents=True)
    (root / "gguf-py" / "gguf" / "__init__.py").write_text("")
    (root / convert.SCRIPT).write_text("")
    return root


def test_env_var_accepts_the_script_or_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _fake_tree(tmp_path / "llama.cpp")
    for value in (tree, tree / convert.SCRIPT):
        monkeypatch.setenv("HONED_CONVERTER", str(value))
        assert convert.ensure_converter(fetch=False) == tree / convert.SCRIPT


def test_env_var_without_gguf_py_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / convert.SCRIPT).write_text("")
    monkeypatch.setenv("HONED_CONVERTER", str(tmp_path / convert.SCRIPT))
    with pytest.raises(convert.ConverterMissing, match="gguf-py"):
        convert.ensure_converter(fetch=False)


def test_missing_cache_without_fetch_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HONED_CONVERTER", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError) as exc:
        convert.ensure_converter(fetch=False)
    assert "python -m honed.exporting.convert fetch" in str(exc.value) and str(tmp_path) in str(exc.value)


def test_cached_tree_is_used_only_while_it_matches_its_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HONED_CONVERTER", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    tree = _fake_tree(convert.cache_dir())
    (tree / "gguf-py" / "gguf" / "__pycache__").mkdir()
    (tree / "gguf-py" / "gguf" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"bytecode: not hashed")
    empty = hashlib.sha256(b"").hexdigest()
    pinned = hashlib.sha256(f"{convert.SCRIPT}\0{empty}\ngguf-py/gguf/__init__.py\0{empty}\n".encode()).hexdigest()
    assert convert.tree_sha256(tree) == pinned
    with pytest.raises(convert.ConverterMissing, match=r"the cached converter's files hash to .* delete the folder"):
        convert.ensure_converter(fetch=False)  # an empty script is not llama.cpp's converter
    monkeypatch.setattr(convert, "CONVERTER_SHA256", pinned)
    assert convert.ensure_converter(fetch=False) == tree / convert.SCRIPT
    (tree / convert.SCRIPT).write_text("import os  # edited after the fetch\n")
    with pytest.raises(convert.ConverterMissing, match=r"it was changed after fetching"):
        convert.ensure_converter(fetch=False)


def test_main_usage() -> None:
    assert convert._main([]) == 2
