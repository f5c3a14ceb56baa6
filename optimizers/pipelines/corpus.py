"""An offline text corpus: sentences from the docstrings of the Python standard library's source files."""

from __future__ import annotations

import ast
import hashlib
import re
import sysconfig
from pathlib import Path

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"[A-Za-z]{2,}")


def _docstrings(path: Path):
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


def _sentences(doc: str):
    for para in re.split(r"\n\s*\n", doc):
        # Skip code samples, tables and argument lists: they are not prose.
        if ">>>" in para or "::" in para or para.lstrip().startswith(("-", "*", ":", "|")):
            continue
        text = " ".join(para.split())
        for s in _SENTENCE_END.split(text):
            if 30 <= len(s) <= 240 and len(_WORD.findall(s)) >= 5 and s[0].isupper():
                yield s


def stdlib_sentences(stdlib_dir: str | Path | None = None) -> list[str]:
    """Every distinct prose sentence of the stdlib's docstrings, in a stable order (sorted by hash).

    Hash order mixes modules, so any prefix is a fair sample and a split by position is random but
    reproducible for the same Python version.
    """
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(p in ("site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3") for p in rel):
            continue
        for doc in _docstrings(path):
            seen.update(_sentences(doc))
    return sorted(seen, key=lambda s: hashlib.sha256(s.encode()).hexdigest())


def split_corpus(sentences: list[str], train: int, heldout: int) -> tuple[list[str], list[str]]:
    if train + heldout > len(sentences):
        raise ValueError(f"the corpus has {len(sentences)} sentences, fewer than {train} + {heldout}")
    return sentences[:train], sentences[train : train + heldout]
