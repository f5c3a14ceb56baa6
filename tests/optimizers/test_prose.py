"""Prose from Debian's documentation formats (reST, troff, fortunes), and the mixed-domain corpus."""

from __future__ import annotations

import gzip

import pytest

from optimizers.pipelines import prose
from optimizers.pipelines.corpus import HELDOUT_DOMAINS, TRAIN_DOMAINS, mixed_corpus

RST = """
:mod:`json` --- JSON encoder and decoder
========================================

The :func:`dumps` function turns a Python object into a JSON string for the caller.
See `the RFC <https://example.org>`_ for the format it writes out.

.. note::

   Directive bodies are indented and never count as running prose here.

For example::

    >>> json.dumps([1, 2])

* List items are skipped because they are fragments rather than prose.
"""

TROFF = r""".TH SIGNAL 7 2023-02-05
.SH NAME
signal \- overview of signals
.SH DESCRIPTION
A process can change the disposition of a signal using
.BR sigaction (2)
or
.BR signal (2).
The \fBkill\fP command sends a signal to a process \(em usually to end it.
.nf
int main(void) { return 0; } /* Code examples are not prose at all. */
.fi
.PP
Each signal has a current disposition, which determines how the process behaves.
"""

FORTUNES = """A classic is something that everyone wants to have read and nobody wants to read.
		-- Mark Twain, "The Disappearance of Literature"
%
Short one.
%
The more data I punch in this card, the lighter it becomes,
and the lower the mailing cost.
"""


def test_rst_keeps_running_prose_and_drops_markup_directives_code_and_lists():
    got = list(prose.rst_sentences(RST))
    assert got == ["The dumps function turns a Python object into a JSON string for the caller.",
                   "See the RFC for the format it writes out."]


def test_troff_keeps_text_of_font_macros_and_drops_examples():
    got = list(prose.troff_sentences(TROFF))
    assert got == ["A process can change the disposition of a signal using sigaction(2) or signal(2).",
                   "The kill command sends a signal to a process - usually to end it.",
                   "Each signal has a current disposition, which determines how the process behaves."]


def test_fortunes_drop_attributions_and_short_cookies():
    assert list(prose.fortune_sentences(FORTUNES)) == [
        "A classic is something that everyone wants to have read and nobody wants to read.",
        "The more data I punch in this card, the lighter it becomes, and the lower the mailing cost."]


def test_package_readers_walk_their_folders(tmp_path):
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "json.rst.txt").write_text(RST)
    assert len(prose.python_doc_sentences(["library", "missing"], root=tmp_path)) == 2
    (tmp_path / "man7").mkdir()
    (tmp_path / "man7" / "signal.7.gz").write_bytes(gzip.compress(TROFF.encode()))
    (tmp_path / "man7" / "sig.7.gz").write_bytes(gzip.compress(b".so man7/signal.7\n"))
    assert len(prose.man_sentences(["7"], root=tmp_path)) == 3
    (tmp_path / "literature").write_text(FORTUNES)
    assert len(prose.fortune_file_sentences(["literature", "absent"], root=tmp_path)) == 2


def _fake_domains(n: int):
    return lambda domain: [f"{domain} sentence number {i} is long enough to count." for i in range(n)]


def test_mixed_corpus_trains_on_every_training_domain_and_holds_whole_domains_out():
    corpus = mixed_corpus(40, 5, sentences=_fake_domains(30))
    assert len(corpus.train) == 40
    assert {s.split()[0] for s in corpus.train} == set(TRAIN_DOMAINS)
    assert [s.split()[0] for s in corpus.train[:4]] == list(TRAIN_DOMAINS), "interleaved: any prefix mixes domains"
    assert set(corpus.heldout) == set(TRAIN_DOMAINS + HELDOUT_DOMAINS) and corpus.heldout_domains == HELDOUT_DOMAINS
    assert all(len(v) == 5 for v in corpus.heldout.values())
    trained = set(corpus.train)
    assert not trained & {s for v in corpus.heldout.values() for s in v}, "no held-out sentence is trained on"
    assert not any(s.split()[0] in HELDOUT_DOMAINS for s in trained)
    with pytest.raises(ValueError, match="fewer than"):
        mixed_corpus(400, 5, sentences=_fake_domains(30))


def test_domain_weights_set_each_training_domain_share_and_keep_every_prefix_mixed():
    even = mixed_corpus(40, 5, sentences=_fake_domains(60))
    assert even == mixed_corpus(40, 5, sentences=_fake_domains(60), weights={"docstrings": 1.0})
    heavy = mixed_corpus(60, 5, sentences=_fake_domains(60), weights={"fortunes-train": 3})
    counts = {d: sum(s.split()[0] == d for s in heavy.train) for d in TRAIN_DOMAINS}
    assert counts == {"docstrings": 10, "python-library": 10, "man-api": 10, "fortunes-train": 30}
    head = [s.split()[0] for s in heavy.train[:12]]
    assert head.count("fortunes-train") == 6 and set(head) == set(TRAIN_DOMAINS), head
    assert heavy.heldout == even.heldout, "weights move training sentences only"
    for bad in ({"python-tutorial": 2}, {"man-api": 0}, {"nope": 1}):
        with pytest.raises(ValueError, match="training domains"):
            mixed_corpus(40, 5, sentences=_fake_domains(60), weights=bad)
    with pytest.raises(ValueError, match="'fortunes-train' has 60 sentences, fewer than 67"):
        mixed_corpus(100, 5, sentences=_fake_domains(60), weights={"fortunes-train": 5})


@pytest.mark.integration
def test_the_installed_packages_give_every_domain_enough_sentences():
    from optimizers.pipelines.corpus import domain_sentences

    for domain in TRAIN_DOMAINS + HELDOUT_DOMAINS:
        assert len(domain_sentences(domain)) >= 1400, domain
