"""Offline English prose from Debian's documentation packages, as sentences per domain.

Sources (each a package CI installs): the Python documentation's reStructuredText sources
(``python3-doc``), the Linux man pages' troff (``manpages``, ``manpages-dev``) and the fortune
cookies (``fortunes``, ``fortunes-min``). A missing source gives no sentences, never an error: the
corpus plan says which domains it needs.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Iterable, Iterator

PYTHON_DOC_SOURCES = Path("/usr/share/doc/python3-doc/html/_sources")
MAN_DIR = Path("/usr/share/man")
FORTUNE_DIR = Path("/usr/share/games/fortunes")
DPKG_INFO = Path("/var/lib/dpkg/info")
MAN_PACKAGES = ("manpages", "manpages-dev")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
_WORD = re.compile(r"[A-Za-z]{2,}")


def prose_sentences(text: str) -> Iterator[str]:
    """Sentences of 30-240 characters, at least 5 words, starting with a capital: prose, not code."""
    text = " ".join(text.split())
    for s in _SENTENCE_END.split(text):
        s = s.strip()
        if 30 <= len(s) <= 240 and len(_WORD.findall(s)) >= 5 and s[0].isupper() and s[-1] in ".!?\"'":
            yield s


# -- reStructuredText (the Python documentation) ----------------------------------------------
_RST_ROLE = re.compile(r":[a-z:+-]+:`~?!?([^`<]*?)(?:\s*<[^>]*>)?`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_{1,2}")
_RST_MARK = re.compile(r"``|\*\*|(?<!\w)\*|\*(?!\w)|`_{0,2}|\|")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+<>.:_])\1{2,}\s*$")


def rst_paragraphs(text: str) -> Iterator[str]:
    """Top-level prose paragraphs: no directives, literal blocks, indented blocks, titles or lists."""
    para: list[str] = []
    literal = False
    for line in text.splitlines() + [""]:
        if not line.strip() or _RST_UNDERLINE.match(line):
            if para:
                joined = " ".join(para)
                literal = joined.rstrip().endswith("::")
                if not literal:
                    yield joined
            para = [] if not line.strip() else []
            continue
        if line[0].isspace() or line.startswith((".. ", "..", "* ", "- ", "+ ", "#. ", ">>>", "|", "=")):
            para = []  # indented (literal, quote, directive body) or a list item: not running prose
            continue
        if literal:
            literal = False
        para.append(line)


def rst_sentences(text: str) -> Iterator[str]:
    for para in rst_paragraphs(text):
        para = _RST_ROLE.sub(r"\1", para)
        para = _RST_LINK.sub(r"\1", para)
        para = _RST_MARK.sub("", para)
        if "::" in para:
            continue
        yield from prose_sentences(para)


# -- troff (the man pages) ---------------------------------------------------------------------
_TROFF_ESCAPE = re.compile(r"\\s[-+]?\d|\\f(?:\[[^\]]*\]|\(..|.)|\\\*(?:\[[^\]]*\]|\(..|.)|\\\((..)|\\\[([^\]]*)\]|\\&|\\%|\\c")
_TROFF_CHARS = {"em": "-", "en": "-", "hy": "-", "aq": "'", "dq": '"', "lq": '"', "rq": '"', "oq": "'", "cq": "'",
                "bu": "", "co": "(c)", "rg": "(R)", "tm": "(TM)", "mu": "x", "ti": "~"}
_FONT_MACROS = (".B", ".I", ".BR", ".RB", ".IR", ".RI", ".BI", ".IB", ".SM", ".SB")
_TROFF_ARGS = re.compile(r'"([^"]*)"|(\S+)')
_BREAK_MACROS = (".PP", ".LP", ".P", ".SH", ".SS", ".TP", ".IP", ".HP", ".RS", ".RE", ".TH", ".br", ".sp", ".in", ".TQ")


def _troff_text(line: str) -> str:
    line = _TROFF_ESCAPE.sub(lambda m: _TROFF_CHARS.get(m.group(1) or m.group(2) or "", ""), line)
    return line.replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ").replace("\\~", " ")


def troff_paragraphs(text: str) -> Iterator[str]:
    """Running text between paragraph macros; examples (.nf/.EX ... .fi/.EE) and tables are skipped."""
    para: list[str] = []
    skipping = False
    for raw in text.splitlines() + [".PP"]:
        word = raw.split(" ", 1)[0]
        if word in (".nf", ".EX", ".TS", ".EQ", ".de"):
            skipping = True
        elif word in (".fi", ".EE", ".TE", ".EN", ".."):
            skipping = False
            continue
        if skipping or raw.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if word in _BREAK_MACROS or word.startswith(".SH"):
            if para:
                yield " ".join(para)
            para = []
        elif word in _FONT_MACROS:
            args = [a or b for a, b in _TROFF_ARGS.findall(raw[len(word):])]
            # .B/.I set their words in one font; .BR and kin alternate fonts with no space between.
            para.append(_troff_text((" " if len(word) == 2 else "").join(args)))
        elif raw.startswith((".", "'")):
            continue
        else:
            para.append(_troff_text(raw))


def troff_sentences(text: str) -> Iterator[str]:
    for para in troff_paragraphs(text):
        yield from prose_sentences(para)


# -- fortunes ------------------------------------------------------------------------------------
def fortune_sentences(text: str) -> Iterator[str]:
    """Each cookie (between ``%`` lines), attributions (``-- Name``) dropped."""
    for cookie in text.split("\n%\n"):
        lines = [ln for ln in cookie.splitlines() if not ln.strip().startswith("--")]
        yield from prose_sentences(" ".join(lines))


# -- reading the packages ------------------------------------------------------------------------
def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def python_doc_sentences(parts: Iterable[str], root: Path = PYTHON_DOC_SOURCES) -> list[str]:
    """Sentences of the Python documentation's ``parts`` (top-level folders: ``library``, ``tutorial``...)."""
    out: list[str] = []
    for part in parts:
        for path in sorted((root / part).rglob("*.rst.txt")) if (root / part).is_dir() else ():
            out.extend(rst_sentences(_read(path)))
    return out


def _package_files(packages: Iterable[str]) -> set[str] | None:
    """The files dpkg installed for ``packages``; None where dpkg has no record (then every page counts)."""
    lists = [DPKG_INFO / f"{p}.list" for p in packages]
    if not all(p.is_file() for p in lists):
        return None
    return {line.strip() for p in lists for line in p.read_text().splitlines()}


def man_sentences(sections: Iterable[str], root: Path = MAN_DIR, packages: Iterable[str] = MAN_PACKAGES) -> list[str]:
    """Sentences of the English man pages in ``sections`` (``"2"``, ``"7"``...) that ``packages`` installed
    (the same pages on every Debian machine, whatever else is installed); ``.so`` links skipped."""
    owned = _package_files(packages) if root == MAN_DIR else None
    out: list[str] = []
    for section in sections:
        folder = root / f"man{section}"
        for path in sorted(folder.glob("*")) if folder.is_dir() else ():
            if owned is not None and str(path) not in owned:
                continue
            if path.is_file() and not path.is_symlink():
                text = _read(path)
                if not text.lstrip().startswith(".so "):
                    out.extend(troff_sentences(text))
    return out


def fortune_file_sentences(names: Iterable[str], root: Path = FORTUNE_DIR) -> list[str]:
    out: list[str] = []
    for name in names:
        path = root / name
        if path.is_file():
            out.extend(fortune_sentences(_read(path)))
    return out
