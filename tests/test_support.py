"""Evidence support of a question: the measure behind abstaining off-corpus."""

from __future__ import annotations

import pytest

from solver.evidence import Evidence
from solver.support import content_terms, question_support


def evidence(text: str, title: str = "") -> Evidence:
    return Evidence(evidence_id=f"doc#c{abs(hash(text)) % 1000}", kind="chunk", doc_id="doc", title=title, text=text, score=1.0, n_tokens=10)


def test_content_terms_drop_stopwords():
    terms = content_terms("What is the boiling point of liquid nitrogen on Neptune?")

    assert terms == {"boili", "point", "liqui", "nitro", "neptu"}


def test_content_terms_keep_numbers():
    assert "42" in content_terms("Who scored 42 points?")


def test_off_corpus_question_unsupported():
    support = question_support(
        "What is the boiling point of liquid nitrogen on Neptune?",
        [evidence("Brindle Point lighthouse was built in 1872.", "dup_a.txt"), evidence("Loch Varran is a freshwater loch.")],
    )

    assert support.term_coverage == pytest.approx(0.2)
    assert support.names == 1
    assert support.names_found == 0
    assert support.is_off_corpus()


def test_supported_question_answers():
    support = question_support(
        "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?",
        [evidence("Kiss and Tell is a 1945 film starring Shirley Temple as Corliss Archer.", "Kiss and Tell (1945 film)")],
    )

    assert support.names_found == support.names
    assert not support.is_off_corpus()


def test_best_single_item_counts():
    question = "Which river flows through Basel and Cologne?"
    split = [evidence("Basel is a city."), evidence("Cologne is a city."), evidence("A river flows.")]
    whole = [evidence("The Rhine flows through Basel and Cologne.")]

    assert question_support(question, split).term_coverage < question_support(question, whole).term_coverage
    assert question_support(question, whole).term_coverage == pytest.approx(0.75)


def test_names_matched_whole_words():
    support = question_support("Where was Ada born?", [evidence("Adams was born in Braintree.")])

    assert support.names == 1
    assert support.names_found == 0


def test_no_evidence_is_off_corpus():
    assert question_support("Who founded Velmora?", []).is_off_corpus()
