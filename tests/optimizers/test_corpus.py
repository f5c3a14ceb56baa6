import pytest

from optimizers.pipelines.corpus import split_corpus, stdlib_sentences

SOURCE = '''
"""Tools for frobnicating widgets. This module reads the widget table from disk and checks it.

>>> frob(1)
2
"""


def frob(x):
    """Return the frobnicated value of a widget for the caller. It never raises an exception here.

    Example::

        frob(3)
    """
'''


def test_sentences_come_from_docstrings_without_code_samples(tmp_path):
    (tmp_path / "widgets.py").write_text(SOURCE)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "test_widgets.py").write_text('"""Tests are skipped because they are not documentation prose."""')
    sents = stdlib_sentences(tmp_path)
    # "Tools for frobnicating widgets." has under 5 words: too short to be a useful sentence.
    assert set(sents) == {
        "This module reads the widget table from disk and checks it.",
        "Return the frobnicated value of a widget for the caller.",
        "It never raises an exception here.",
    }
    assert stdlib_sentences(tmp_path) == sents  # stable order


@pytest.mark.integration
def test_the_real_stdlib_gives_thousands_of_sentences_and_splits_disjointly():
    sents = stdlib_sentences()
    assert len(sents) > 3000
    train, held = split_corpus(sents, 100, 50)
    assert len(train) == 100 and len(held) == 50 and not set(train) & set(held)
    with pytest.raises(ValueError, match="fewer"):
        split_corpus(sents[:10], 8, 5)
