"""Offline text corpora: the stdlib's docstrings, and a mixed-domain corpus with whole domains held out."""

from __future__ import annotations

import ast
import hashlib
import re
import sysconfig
from dataclasses import dataclass
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


# -- the mixed-domain corpus -----------------------------------------------------------------------
# Fortune files are topics: some train, the others are held out whole (everyday English, unlike docs).
FORTUNES_TRAIN = ("fortunes", "wisdom", "people", "humorists", "computers", "science", "politics", "law",
                  "education", "work", "platitudes", "miscellaneous")
FORTUNES_HELDOUT = ("literature", "love", "food", "pets", "sports", "medicine", "kids", "men-women", "songs-poems")

# Domains the students are distilled on (their unseen sentences are scored too) ...
TRAIN_DOMAINS = ("docstrings", "python-library", "man-api", "fortunes-train")
# ... and domains no student ever sees: the quality floor is checked on text unlike the training text.
HELDOUT_DOMAINS = ("python-tutorial", "man-overviews", "fortunes-heldout")


def domain_sentences(domain: str) -> list[str]:
    """Every distinct sentence of ``domain``, in a stable hash order (any prefix is a fair sample)."""
    from optimizers.pipelines import prose

    sources = {
        "docstrings": stdlib_sentences,
        "python-library": lambda: prose.python_doc_sentences(("library", "reference")),
        "python-tutorial": lambda: prose.python_doc_sentences(("tutorial", "howto", "faq")),
        "man-api": lambda: prose.man_sentences(("2", "3")),
        "man-overviews": lambda: prose.man_sentences(("5", "7")),
        "fortunes-train": lambda: prose.fortune_file_sentences(FORTUNES_TRAIN),
        "fortunes-heldout": lambda: prose.fortune_file_sentences(FORTUNES_HELDOUT),
    }
    if domain not in sources:
        raise ValueError(f"unknown corpus domain {domain!r}; known: {', '.join(sources)}")
    return sorted(set(sources[domain]()), key=lambda s: hashlib.sha256(s.encode()).hexdigest())


@dataclass(frozen=True)
class MixedCorpus:
    """Training sentences drawn evenly from the training domains, and held-out sentences per domain."""

    train: list[str]
    heldout: dict[str, list[str]]  # every domain: unseen sentences of training domains, and whole held-out domains
    heldout_domains: tuple[str, ...]

    def describe(self) -> str:
        sizes = ", ".join(f"{d}{' (held out)' if d in self.heldout_domains else ''}: {len(s)}" for d, s in self.heldout.items())
        return f"train {len(self.train)} sentences from {', '.join(TRAIN_DOMAINS)}; scored per domain on {sizes}"


def domain_shares(weights: dict[str, float] | None) -> dict[str, float]:
    """Every training domain's weight (1 where ``weights`` does not name it); a weight <= 0 or a
    name that is not a training domain is an error."""
    weights = weights or {}
    if set(weights) - set(TRAIN_DOMAINS) or any(w <= 0 for w in weights.values()):
        raise ValueError(f"training domain weights must be > 0 and name training domains ({', '.join(TRAIN_DOMAINS)})")
    return {d: weights.get(d, 1.0) for d in TRAIN_DOMAINS}


def mixed_corpus(train_sentences: int, heldout_per_domain: int, sentences=domain_sentences,
                 weights: dict[str, float] | None = None) -> MixedCorpus:
    """``train_sentences`` split over the training domains (evenly, or in proportion to ``weights``;
    a domain not named weighs 1), interleaved, and ``heldout_per_domain`` unseen sentences of every
    domain. A domain too small for its share is an error naming the package."""
    share = domain_shares(weights)
    total = sum(share.values())
    train_parts, heldout = [], {}
    for domain in TRAIN_DOMAINS + HELDOUT_DOMAINS:
        got = sentences(domain)
        n_train = int(train_sentences * share[domain] / total) if domain in TRAIN_DOMAINS else 0
        need = heldout_per_domain + n_train
        if len(got) < need:
            raise ValueError(f"corpus domain {domain!r} has {len(got)} sentences, fewer than {need}: are python3-doc, "
                             "manpages, manpages-dev and fortunes installed?")
        heldout[domain] = got[:heldout_per_domain]
        if domain in TRAIN_DOMAINS:
            train_parts.append(got[heldout_per_domain : heldout_per_domain + n_train])
    # Interleaved by position within each domain, so any prefix mixes the domains in their shares
    # (with equal shares: one sentence of each domain in turn).
    keyed = [((i + 0.5) / len(part), k, x) for k, part in enumerate(train_parts) for i, x in enumerate(part)]
    train = [x for _, _, x in sorted(keyed, key=lambda t: (t[0], t[1]))]
    return MixedCorpus(train, heldout, HELDOUT_DOMAINS)
