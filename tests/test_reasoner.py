"""Tests of the embedded reasoner against the real spaCy model and MiniLM embedder.

The passages are HotpotQA paragraphs (Yang et al., 2018), which quote Wikipedia; both
are licensed CC BY-SA 4.0.
"""

from __future__ import annotations

import pytest

from indexer.embedding import Embedder, count_tokens
from solver.evidence import Candidate, Evidence
from solver.reasoner import BridgeEntity, EmbeddedReasoner, Reasoner, ReasonResult

PASSAGES = {
    "Shirley Temple": (
        "Shirley Temple Black (April 23, 1928 – February 10, 2014) was an American actress, "
        "singer, dancer, businesswoman, and diplomat who was Hollywood's number one box-office "
        "draw as a child actress from 1935 to 1938. As an adult, she was named United States "
        "ambassador to Ghana and to Czechoslovakia and also served as Chief of Protocol of the "
        "United States."
    ),
    "Kiss and Tell (1945 film)": (
        "Kiss and Tell is a 1945 American comedy film starring then 17-year-old Shirley Temple "
        "as Corliss Archer. In the film, two teenage girls cause their respective parents much "
        "concern when they start to become interested in boys. The parents' bickering about "
        "which girl is the worse influence causes more problems than it solves."
    ),
    "Meet Corliss Archer": (
        "Meet Corliss Archer, a program from radio's Golden Age, ran from January 7, 1943 to "
        "September 30, 1956. Although it was CBS's answer to NBC's popular \"A Date with Judy\", "
        "it was also broadcast by NBC in 1948 as a summer replacement for \"The Bob Hope Show\". "
        "From October 3, 1952 to June 26, 1953, it aired on ABC, finally returning to CBS."
    ),
    "A Kiss for Corliss": (
        "A Kiss for Corliss is a 1949 American comedy film directed by Richard Wallace and "
        "written by Howard Dimsdale. It stars Shirley Temple in her final starring role as well "
        "as her final film appearance. It is a sequel to the 1945 film \"Kiss and Tell\"."
    ),
    "Annie Morton": (
        "Annie Morton (born October 8, 1970) is an American model born in Pennsylvania. She has "
        "appeared on the covers of \"British Vogue\", \"ID\", \"Marie Claire\", and other "
        "magazines."
    ),
    "Terry Richardson": (
        "Terrence \"Uncle Terry\" Richardson (born August 14, 1965) is an American fashion and "
        "portrait photographer who has shot advertising campaigns for Marc Jacobs, Aldo, "
        "Supreme, Sisley, Tom Ford, and Yves Saint Laurent among others."
    ),
}

BRIDGE_QUESTION = (
    "What government position was held by the woman who portrayed Corliss Archer in the "
    "film Kiss and Tell?"
)


def make_evidence(titles: list[str], *, scores: list[float] | None = None) -> list[Evidence]:
    scores = scores or [1.0 - 0.1 * i for i in range(len(titles))]
    texts = [PASSAGES[title] for title in titles]
    return [
        Evidence(
            evidence_id=f"p{i}",
            kind="chunk",
            doc_id=f"d{i}",
            title=title,
            text=text,
            score=score,
            n_tokens=n_tokens,
        )
        for i, (title, text, score, n_tokens) in enumerate(
            zip(titles, texts, scores, count_tokens(texts), strict=True)
        )
    ]


def make_passage(evidence_id: str, title: str, text: str, score: float = 0.5) -> Evidence:
    return Evidence(evidence_id, "chunk", evidence_id, title, text, score, count_tokens([text])[0])


@pytest.fixture(scope="module")
def reasoner() -> EmbeddedReasoner:
    return EmbeddedReasoner(Embedder())


# Answer types -----------------------------------------------------------------------

ANSWER_TYPE_CASES = [
    ("Who directed the film Jaws?", "person"),
    ("Where was Annie Morton born?", "place"),
    ("In what city is the company headquartered?", "place"),
    ("When was Poison's album \"Shut Up, Make Love\" released?", "date"),
    ("In which year was the King who made the 1925 Birthday Honours born?", "date"),
    ("How many people can the arena seat?", "number"),
    ("What was the population of the town in 2001?", "number"),
    ("Are Annie Morton and Terry Richardson both American?", "yes_no"),
    ("Were Annie Morton and Shirley Temple of the same nationality?", "yes_no"),
    ("Is Meet Corliss Archer a radio program?", "yes_no"),
    ("Who is older, Annie Morton or Terry Richardson?", "one_of_two"),
    ("Which came first, Kiss and Tell or A Kiss for Corliss?", "one_of_two"),
    ("Which band has more members, Muse or Blur?", "one_of_two"),
    ("Which record label released the album Thriller?", "organisation"),
    ("What government position was held by Shirley Temple?", "entity"),
]


@pytest.mark.parametrize(("question", "kind"), ANSWER_TYPE_CASES)
def test_answer_type_kind(reasoner: EmbeddedReasoner, question: str, kind: str) -> None:
    assert reasoner.answer_type(question).kind == kind


def test_answer_type_one_of_two_options(reasoner: EmbeddedReasoner) -> None:
    answer_type = reasoner.answer_type("Who is older, Annie Morton or Terry Richardson?")

    assert answer_type.options == ("Annie Morton", "Terry Richardson")
    assert answer_type.direction == "older"
    assert answer_type.attribute == "birth"
    assert answer_type.pick == "min"


def test_answer_type_options_without_comma(reasoner: EmbeddedReasoner) -> None:
    answer_type = reasoner.answer_type("who is younger Keith Bostic or Jerry Glanville ?")

    assert answer_type.options == ("Keith Bostic", "Jerry Glanville")
    assert answer_type.pick == "max"


def test_answer_type_compared_noun(reasoner: EmbeddedReasoner) -> None:
    answer_type = reasoner.answer_type("Which band has more members, Muse or Blur?")

    assert answer_type.attribute == "number"
    assert answer_type.focus_head == "members"


def test_answer_type_focus_words(reasoner: EmbeddedReasoner) -> None:
    answer_type = reasoner.answer_type("The director of Big Stone Gap is based in what New York city?")

    assert answer_type.focus_head == "city"
    assert "york" in answer_type.focus


# Decomposition ----------------------------------------------------------------------


def test_decompose_bridge_question(reasoner: EmbeddedReasoner) -> None:
    hops = reasoner.decompose(BRIDGE_QUESTION)

    assert len(hops) == 2
    assert hops[0] == "Who is the woman who portrayed Corliss Archer in the film Kiss and Tell?"
    assert hops[1] == "What government position was held by #1?"


def test_decompose_inner_question_word(reasoner: EmbeddedReasoner) -> None:
    hops = reasoner.decompose("Ralph Hefferline was a psychology professor at a university that is located in what city?")

    assert hops[0] == "Ralph Hefferline was a psychology professor at which university?"
    assert hops[1] == "#1 is located in what city?"


def test_decompose_comparison_per_entity(reasoner: EmbeddedReasoner) -> None:
    hops = reasoner.decompose("Who is older, Annie Morton or Terry Richardson?")

    assert hops == ["When was Annie Morton born?", "When was Terry Richardson born?"]


# Bridge -----------------------------------------------------------------------------


def test_bridge_names_described_entity(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Kiss and Tell (1945 film)", "Meet Corliss Archer", "A Kiss for Corliss", "Shirley Temple"])

    result = reasoner.bridge(BRIDGE_QUESTION, evidence)

    assert isinstance(result.output[0], BridgeEntity)
    assert result.output[0].name == "Shirley Temple"


def test_bridge_follow_up_substitutes_entity(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Kiss and Tell (1945 film)", "Meet Corliss Archer", "A Kiss for Corliss", "Shirley Temple"])

    result = reasoner.bridge(BRIDGE_QUESTION, evidence)

    assert result.output[0].follow_up_query == "What government position was held by Shirley Temple?"


def test_bridge_evidence_id_names_passage(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Kiss and Tell (1945 film)", "Meet Corliss Archer", "A Kiss for Corliss", "Shirley Temple"])

    result = reasoner.bridge(BRIDGE_QUESTION, evidence)

    assert result.output[0].evidence_id in {"p0", "p2"}


def test_second_hop_finds_position(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Shirley Temple", "Kiss and Tell (1945 film)", "Meet Corliss Archer"])

    result = reasoner.candidates(
        "What government position was held by Shirley Temple?",
        evidence,
        answer_type=reasoner.answer_type(BRIDGE_QUESTION),
        exclude=(BRIDGE_QUESTION,),
    )
    texts = [candidate.text for candidate in result.output]

    assert any("Chief of Protocol" in text for text in texts[:3])


# Comparison -------------------------------------------------------------------------


def test_compare_older_picks_earlier_birth(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Annie Morton", "Terry Richardson"])

    result = reasoner.compare("Who is older, Annie Morton or Terry Richardson?", evidence)

    assert result.output[0].text == "Terry Richardson"


def test_compare_younger_picks_later_birth(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Annie Morton", "Terry Richardson"])

    result = reasoner.compare("Who is younger, Annie Morton or Terry Richardson?", evidence)

    assert result.output[0].text == "Annie Morton"


def test_compare_derivation_shows_dates(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Annie Morton", "Terry Richardson"])

    derivation = reasoner.compare("Who is older, Annie Morton or Terry Richardson?", evidence).output[0].derivation

    assert "1970-10-08" in derivation
    assert "1965-08-14" in derivation


def test_compare_first_uses_release_year(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["A Kiss for Corliss", "Kiss and Tell (1945 film)"])

    result = reasoner.compare("Which came first, Kiss and Tell or A Kiss for Corliss?", evidence)

    assert result.output[0].text == "Kiss and Tell"


def test_compare_more_members_uses_counts(reasoner: EmbeddedReasoner) -> None:
    evidence = [
        make_passage("a", "Glass Harbour", "Glass Harbour is a rock band from Leeds. The band has five members."),
        make_passage("b", "Paper Lanterns", "Paper Lanterns is a folk duo from Cork with two members."),
    ]

    result = reasoner.compare("Which band has more members, Glass Harbour or Paper Lanterns?", evidence)

    assert result.output[0].text == "Glass Harbour"


def test_compare_yes_when_both_share_property(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Annie Morton", "Terry Richardson"])

    result = reasoner.compare("Are Annie Morton and Terry Richardson both American?", evidence)

    assert result.output[0].text == "yes"


def test_compare_no_when_one_lacks_property(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Annie Morton", "Terry Richardson"])

    result = reasoner.compare("Are Annie Morton and Terry Richardson both photographers?", evidence)

    assert result.output[0].text == "no"


def test_compare_same_nationality(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Annie Morton", "Terry Richardson"])

    result = reasoner.compare("Were Annie Morton and Terry Richardson of the same nationality?", evidence)

    assert result.output[0].text == "yes"


def test_compare_names_containing_and(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Kiss and Tell (1945 film)", "A Kiss for Corliss", "Annie Morton"])

    derivation = reasoner.compare("Are Kiss and Tell and A Kiss for Corliss both comedy films?", evidence).output[0].derivation

    assert "Kiss and Tell:" in derivation
    assert "A Kiss for Corliss:" in derivation


def test_compare_died_first_living_person(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Shirley Temple", "Annie Morton"])

    result = reasoner.compare("Who died first, Annie Morton or Shirley Temple?", evidence)

    assert result.output[0].text == "Shirley Temple"


def test_compare_option_without_direction(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Annie Morton", "Terry Richardson"])

    result = reasoner.compare("Who was born in Pennsylvania, Annie Morton or Terry Richardson?", evidence)

    assert result.output[0].text == "Annie Morton"


def test_compare_confidence_in_unit_interval(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Annie Morton", "Terry Richardson"])

    result = reasoner.compare("Who is older, Annie Morton or Terry Richardson?", evidence)

    assert all(0.0 <= candidate.confidence <= 1.0 for candidate in result.output)


# Candidates -------------------------------------------------------------------------


def test_candidates_skip_question_entity(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Kiss and Tell (1945 film)", "A Kiss for Corliss"])

    result = reasoner.candidates("Which actress starred as Corliss Archer in Kiss and Tell?", evidence)

    assert result.output[0].text == "Shirley Temple"


def test_candidates_top_not_in_question(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Kiss and Tell (1945 film)", "A Kiss for Corliss"])
    question = "Which actress starred as Corliss Archer in Kiss and Tell?"

    result = reasoner.candidates(question, evidence)

    assert result.output[0].text.lower() not in question.lower()


def test_candidates_carry_sentence_and_support(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Kiss and Tell (1945 film)", "A Kiss for Corliss"])

    best = reasoner.candidates("Which actress starred as Corliss Archer in Kiss and Tell?", evidence).output[0]

    assert "Shirley Temple" in best.sentence
    assert best.support[0] in {"p0", "p1"}


def test_candidates_sorted_by_score(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Shirley Temple", "Kiss and Tell (1945 film)"])

    output = reasoner.candidates("When was Shirley Temple born?", evidence).output
    scores = [candidate.score for candidate in output]

    assert scores == sorted(scores, reverse=True)


def test_candidates_date_question_gives_date(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Shirley Temple", "Kiss and Tell (1945 film)"])

    best = reasoner.candidates("When was Shirley Temple born?", evidence).output[0]

    assert best.text == "April 23, 1928"


def test_confidence_in_unit_interval(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Shirley Temple", "Kiss and Tell (1945 film)", "A Kiss for Corliss"])

    output = reasoner.candidates("Which actress starred as Corliss Archer in Kiss and Tell?", evidence).output

    assert all(0.0 <= candidate.confidence <= 1.0 for candidate in output)
    assert sum(candidate.confidence for candidate in output) <= 1.0 + 1e-9


def test_confidence_higher_when_evidence_agrees(reasoner: EmbeddedReasoner) -> None:
    question = "Which actress starred as Corliss Archer in the film?"
    alone = [make_passage("a", "Kiss and Tell", "Kiss and Tell is a 1945 comedy film starring Shirley Temple as Corliss Archer.")]
    agreeing = alone + [
        make_passage("b", "Kiss and Tell (play)", "The film version cast Shirley Temple as Corliss Archer, the teenage heroine."),
    ]

    single = reasoner.candidates(question, alone).output[0]
    repeated = reasoner.candidates(question, agreeing).output[0]

    assert single.text == repeated.text == "Shirley Temple"
    assert repeated.confidence > single.confidence


# Verification -----------------------------------------------------------------------


def test_verify_prefers_supported_candidate(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Shirley Temple", "Kiss and Tell (1945 film)"])
    question = "What government position was held by Shirley Temple?"

    supported = reasoner.verify(question, Candidate("Chief of Protocol", 0.0), evidence).output
    unsupported = reasoner.verify(question, Candidate("Lord High Treasurer", 0.0), evidence).output

    assert 0.0 <= unsupported < supported <= 1.0


# Token accounting -------------------------------------------------------------------


def test_tokens_counted(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Shirley Temple"])

    result = reasoner.candidates("When was Shirley Temple born?", evidence)

    assert isinstance(result, ReasonResult)
    assert result.tokens_in > 0
    assert result.tokens_out > 0


def test_tokens_grow_with_evidence(reasoner: EmbeddedReasoner) -> None:
    question = "When was Shirley Temple born?"

    small = reasoner.candidates(question, make_evidence(["Shirley Temple"]))
    large = reasoner.candidates(question, make_evidence(["Shirley Temple", "Kiss and Tell (1945 film)", "Annie Morton"]))

    assert large.tokens_in > small.tokens_in


def test_tokens_include_question(reasoner: EmbeddedReasoner) -> None:
    evidence = make_evidence(["Shirley Temple"])
    question = "When was Shirley Temple born?"

    result = reasoner.candidates(question, evidence)

    assert result.tokens_in == evidence[0].n_tokens + count_tokens([question])[0]


def test_embedded_reasoner_meets_protocol(reasoner: EmbeddedReasoner) -> None:
    assert isinstance(reasoner, Reasoner)
    assert reasoner.tier == "embedded"
