"""Reasoners: the model tier that reads evidence and proposes answers.

``Reasoner`` is the interface every tier implements. ``EmbeddedReasoner`` is the tier
that needs no network and no LLM: spaCy for parses and entities, MiniLM sentence
embeddings for relevance, and grammar rules for question analysis, bridges and
comparisons. Every call returns a ``ReasonResult`` whose token counts the solver charges
as cost.

Example::

    reasoner = EmbeddedReasoner()
    result = reasoner.candidates(question, evidence)
    best = result.output[0]  # a Candidate with confidence, sentence and evidence ids
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from solver.answer_types import (
    PLACEHOLDER,
    AnswerType,
    classify_question,
    split_hops,
    yes_no_entities,
    yes_no_entity_pairs,
    yes_no_predicate,
)
from solver.candidates import (
    ScoredSentence,
    SpanScorer,
    calibrate,
    content_stems,
    merge_occurrences,
    normalize_answer,
    stem,
    type_fit,
)
from solver.evidence import Candidate, Evidence

TIER = "embedded"

# Score added to a bridge entity that is the title of another evidence passage, about
# the weight of a perfect type fit, because the second hop continues in that passage.
LINK_BONUS = 2.5
# Span labels that cannot name a bridge entity: numbers, dates and common nouns.
_UNNAMED_LABELS = {"COMMON", "DATE", "TIME", "CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT"}


def _title_key(title: str) -> str:
    """Normalise a passage title without its parenthesis: "Kiss and Tell (1945 film)"."""
    return normalize_answer(re.sub(r"\s*\(.*?\)\s*$", "", title))


@dataclass
class ReasonResult:
    """The output of one reasoner call and the model tokens it cost."""

    output: Any
    tokens_in: int  # tokens of the question and of the evidence text read
    tokens_out: int  # tokens of the text the reasoner produced


@dataclass
class BridgeEntity:
    """An entity that links the first hop of a question to the second."""

    name: str
    score: float  # larger is better; comparable within one call
    evidence_id: str  # the passage that names the entity
    follow_up_query: str  # the rest of the question with the entity substituted


@runtime_checkable
class Reasoner(Protocol):
    """A model tier: the embedded rules here, or an OpenAI-compatible chat endpoint."""

    tier: str

    def answer_type(self, question: str) -> AnswerType: ...

    def decompose(self, question: str) -> list[str]: ...

    def candidates(
        self,
        question: str,
        evidence: list[Evidence],
        *,
        answer_type: AnswerType | None = None,
        limit: int = 5,
    ) -> ReasonResult: ...

    def bridge(self, question: str, evidence: list[Evidence], *, limit: int = 3) -> ReasonResult: ...

    def verify(self, question: str, candidate: Candidate, evidence: list[Evidence]) -> ReasonResult: ...

    def compare(self, question: str, evidence: list[Evidence]) -> ReasonResult: ...


class EmbeddedReasoner:
    """The reasoner that runs in process with spaCy and MiniLM, without an LLM.

    Parameters
    ----------
    embedder:
        An ``indexer.embedding.Embedder``; one is built on first use when omitted.
    max_sentences:
        How many sentences, chosen by word overlap with the question, are embedded and
        parsed per call. More sentences reach answers in weaker matches, and each costs
        several milliseconds of embedding and parsing (an estimate from runs on a
        2-core machine).
    """

    tier = TIER

    def __init__(self, embedder: Any = None, *, max_sentences: int = 6) -> None:
        self._embedder = embedder
        self.scorer = SpanScorer(self._embed, max_sentences=max_sentences)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            from indexer.embedding import Embedder

            self._embedder = Embedder()
        return self._embedder.embed(texts)

    # Question analysis --------------------------------------------------------------

    def answer_type(self, question: str) -> AnswerType:
        """Classify the expected answer; see ``solver.answer_types.AnswerType``."""
        return classify_question(question)

    def decompose(self, question: str) -> list[str]:
        """Split ``question`` into hop queries.

        A bridge question gives two queries, and the second contains the placeholder
        "#1" for the answer of the first. A comparison gives one query per entity. Any
        other question comes back as the only query.
        """
        return list(split_hops(question, self.answer_type(question)).queries)

    # Answer candidates --------------------------------------------------------------

    def candidates(
        self,
        question: str,
        evidence: list[Evidence],
        *,
        answer_type: AnswerType | None = None,
        limit: int = 5,
        exclude: tuple[str, ...] = (),
    ) -> ReasonResult:
        """Extract answer spans from ``evidence`` and rank them.

        ``answer_type`` overrides the type read from ``question``, which a caller needs
        when ``question`` is a follow-up query. ``exclude`` lists further texts (the
        original question) whose words an answer should not repeat. Returns up to
        ``limit`` candidates, best first, with calibrated confidences.
        """
        answer_type = answer_type or self.answer_type(question)
        occurrences = self.scorer.score_spans(question, evidence, answer_type, echo_texts=exclude)
        ranked = calibrate(merge_occurrences(occurrences, answer_type))[:limit]
        return self._result(ranked, question, evidence, [c.text for c in ranked])

    # Bridge entities ----------------------------------------------------------------

    def bridge(self, question: str, evidence: list[Evidence], *, limit: int = 3) -> ReasonResult:
        """Name the entity the question describes without naming it, and the follow-up.

        The first hop query ("Who is the woman who portrayed Corliss Archer ...?") is
        answered from ``evidence`` like a question whose type is the described noun's
        kind. Entities that are also the title of another passage in ``evidence`` get a
        bonus, because a linked passage is where the second hop continues. Each
        follow-up query is the second hop with the entity in place of the placeholder.
        """
        answer_type = self.answer_type(question)
        hops = split_hops(question, answer_type)
        if hops.named and len(hops.queries) >= 2:
            passage = _option_passage(hops.named, evidence)
            entity = BridgeEntity(
                name=hops.named,
                score=1.0,
                evidence_id=passage.evidence_id if passage else "",
                follow_up_query=hops.queries[1].replace(PLACEHOLDER, hops.named),
            )
            return self._result([entity], question, evidence, [entity.follow_up_query])
        if len(hops.queries) >= 2 and PLACEHOLDER in hops.queries[1]:
            first_hop, second_hop = hops.queries[0], hops.queries[1]
            kind = hops.described_kind
        else:
            first_hop, second_hop = question, ""
            kind = "entity"
        hop_type = classify_question(first_hop)
        if kind != "entity":
            hop_type = AnswerType(kind=kind, focus=hop_type.focus, focus_head=hop_type.focus_head)
        elif hop_type.kind in ("yes_no", "one_of_two", "date", "number"):
            hop_type = AnswerType(kind="entity", focus=hop_type.focus, focus_head=hop_type.focus_head)

        occurrences = self.scorer.score_spans(first_hop, evidence, hop_type, echo_texts=(question,))
        occurrences = [o for o in occurrences if o.label not in _UNNAMED_LABELS]
        titles = {_title_key(item.title): item for item in evidence}
        for occurrence in occurrences:
            linked = titles.get(normalize_answer(occurrence.text))
            if linked is not None and linked.evidence_id != occurrence.sentence.evidence.evidence_id:
                occurrence.features.bonus += LINK_BONUS
        ranked = merge_occurrences(occurrences, hop_type)

        entities: list[BridgeEntity] = []
        for candidate in ranked[:limit]:
            if second_hop:
                follow_up = second_hop.replace(PLACEHOLDER, candidate.text)
            else:
                follow_up = f"{question} {candidate.text}"
            entities.append(BridgeEntity(candidate.text, candidate.score, candidate.support[0], follow_up))
        return self._result(entities, question, evidence, [e.follow_up_query for e in entities])

    # Verification -------------------------------------------------------------------

    def verify(self, question: str, candidate: Candidate, evidence: list[Evidence]) -> ReasonResult:
        """Score how well ``evidence`` supports ``candidate``, in [0, 1].

        support = 0.45 * similarity + 0.3 * type fit + 0.25 * mention, where similarity
        is the cosine of the question and the best sentence that contains the candidate
        (mapped from [0.1, 0.7] to [0, 1]), type fit is the candidate's entity label
        against the expected answer type, and mention is the share of the question's
        content words found in that sentence or its passage title. A candidate found in
        no sentence gets 0.
        """
        answer_type = self.answer_type(question)
        target = normalize_answer(candidate.text)
        sentences: list[ScoredSentence] = []
        for rank, item in enumerate(sorted(evidence, key=lambda e: e.score, reverse=True)):
            for index, text in enumerate(self.scorer.passage_sentences(item)):
                if target and target in normalize_answer(text):
                    sentences.append(ScoredSentence(item, rank, index, text))
        if not sentences:
            return self._result(0.0, question, evidence, ["0.00"])

        vectors = self.scorer.sentence_vectors(sentences)
        query_vector = self.scorer.query_vector_of(question)
        similarities = [float(vector @ query_vector) for vector in vectors]
        best = int(np.argmax(similarities))
        similarity = min(max((similarities[best] - 0.1) / 0.6, 0.0), 1.0)

        doc = self.scorer.parse([sentences[best]])[0]
        fit = 0.0
        for ent in doc.ents:
            if normalize_answer(ent.text) == target:
                fit = max(fit, type_fit(ent.label_, ent, answer_type))
        if fit == 0.0 and answer_type.kind == "entity":
            fit = 0.5

        question_stems = set(content_stems(question))
        context = set(content_stems(sentences[best].text)) | set(content_stems(sentences[best].evidence.title))
        mention = len(question_stems & context) / len(question_stems) if question_stems else 0.0
        support = min(max(0.45 * similarity + 0.3 * fit + 0.25 * mention, 0.0), 1.0)
        return self._result(support, question, evidence, [f"{support:.2f}"])

    # Comparisons --------------------------------------------------------------------

    def compare(self, question: str, evidence: list[Evidence]) -> ReasonResult:
        """Answer a yes/no or which-of-two question from facts found for each entity.

        Dates come from each entity's own passage (birth and death dates from the
        parenthesis after the name, founding or release years from the sentence with the
        question's verb), numbers from next to the compared noun ("12 members"). Without
        a comparison word, the option whose passage better matches the rest of the
        question wins. Returns candidates with the working in ``Candidate.derivation``.
        """
        answer_type = self.answer_type(question)
        if answer_type.kind == "one_of_two":
            ranked = answer_one_of_two(question, answer_type, evidence, self.scorer)
        elif answer_type.kind == "yes_no":
            ranked = answer_yes_no(question, answer_type, evidence, self.scorer)
        else:
            ranked = []
        ranked = calibrate_pair(ranked)
        return self._result(ranked, question, evidence, [c.text for c in ranked] + [c.derivation for c in ranked])

    # Accounting ---------------------------------------------------------------------

    def _result(self, output: Any, question: str, evidence: list[Evidence], written: list[str]) -> ReasonResult:
        from indexer.embedding import count_tokens

        counts = count_tokens([question, *[text for text in written if text]])
        tokens_in = counts[0] + sum(max(item.n_tokens, 0) for item in evidence)
        return ReasonResult(output=output, tokens_in=tokens_in, tokens_out=sum(counts[1:]))


def calibrate_pair(candidates: list[Candidate]) -> list[Candidate]:
    """Set confidences of comparison answers: a logistic of the score gap, best first."""
    candidates.sort(key=lambda c: c.score, reverse=True)
    if not candidates:
        return candidates
    if len(candidates) == 1:
        candidates[0].confidence = 1.0 / (1.0 + math.exp(-candidates[0].score))
        return candidates
    gap = candidates[0].score - candidates[1].score
    top = 1.0 / (1.0 + math.exp(-gap))
    candidates[0].confidence = top
    for candidate in candidates[1:]:
        candidate.confidence = (1.0 - top) / (len(candidates) - 1)
    return candidates


# Comparisons ------------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
            ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
            ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
# "12 May 1950", "May 12, 1950", "May 1950" or "1950". A year has three or four digits
# and may be followed by BC or AD.
_DATE = re.compile(
    rf"(?:(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m1>{_MONTH}),?\s+(?P<y1>\d{{3,4}})"
    rf"|(?P<m2>{_MONTH}),?\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y2>\d{{3,4}})"
    rf"|(?P<m3>{_MONTH})\s+(?P<y3>\d{{3,4}})"
    rf"|(?<![\d,.$])(?P<y4>\d{{3,4}})(?![\d,])(?:\s*(?P<era>BC|BCE|AD|CE)\b)?)",
    re.IGNORECASE,
)
_EVENT_VERBS = (
    "founded", "established", "formed", "released", "published", "opened", "built",
    "began", "premiered", "launched", "created", "fought", "occurred",
    "introduced", "started", "debuted", "completed", "incorporated", "aired", "produced",
    "written", "signed", "held", "took place",
)
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "dozen": 12,
}
_MULTIPLIERS = {"hundred": 1e2, "thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_NUMBER = re.compile(
    r"(?<![\w.])(?P<value>\d+(?:,\d{3})*(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"
    r"(?:\s+(?P<scale>hundred|thousand|million|billion|trillion))?(?![\w])",
    re.IGNORECASE,
)
# Words that measure each comparative adjective, used when the question names no noun.
_MEASURE_WORDS = {
    "higher": ("height", "tall", "high", "feet", "ft", "metres", "meters", "m", "storeys", "stories", "floors", "elevation"),
    "larger": ("area", "population", "size", "km2", "square", "acres", "hectares", "large", "inhabitants", "residents"),
    "longer": ("length", "long", "km", "miles", "kilometres", "kilometers", "years"),
    "smaller": ("area", "population", "size", "km2", "square", "acres", "hectares", "small"),
}
# Country names for demonyms, so "American" matches "United States".
_DEMONYMS = {
    "american": ("united states", "u.s.", "usa", "america"),
    "british": ("united kingdom", "uk", "britain", "england", "scotland", "wales", "english", "scottish", "welsh"),
    "english": ("england", "british"),
    "scottish": ("scotland", "british"),
    "welsh": ("wales", "british"),
    "irish": ("ireland",),
    "canadian": ("canada",),
    "australian": ("australia",),
    "french": ("france",),
    "german": ("germany",),
    "italian": ("italy",),
    "spanish": ("spain",),
    "mexican": ("mexico",),
    "chinese": ("china",),
    "japanese": ("japan",),
    "indian": ("india",),
    "russian": ("russia", "soviet"),
    "dutch": ("netherlands", "holland"),
    "swedish": ("sweden",),
    "norwegian": ("norway",),
    "danish": ("denmark",),
    "polish": ("poland",),
    "argentine": ("argentina", "argentinian"),
    "argentinian": ("argentina", "argentine"),
    "brazilian": ("brazil",),
    "korean": ("korea",),
    "turkish": ("turkey",),
    "greek": ("greece",),
    "austrian": ("austria",),
    "swiss": ("switzerland",),
    "belgian": ("belgium",),
    "new zealand": ("new zealand",),
    "icelandic": ("iceland",),
    "finnish": ("finland",),
    "portuguese": ("portugal",),
    "czech": ("czech republic", "czechoslovakia"),
    "hungarian": ("hungary",),
    "israeli": ("israel",),
    "egyptian": ("egypt",),
    "pakistani": ("pakistan",),
    "filipino": ("philippines",),
    "chilean": ("chile",),
    "colombian": ("colombia",),
}


def _option_passage(option: str, evidence: list[Evidence]) -> Evidence | None:
    """Return the passage about ``option``; see ``_option_passages``."""
    passages = _option_passages(option, evidence)
    return passages[0] if passages else None


def _option_match(option: str, evidence: list[Evidence]) -> float:
    """Return how well ``option`` matches its best passage title, 0 when none qualifies."""
    scored = _scored_option_passages(option, evidence)
    return max((overlap for overlap, _ in scored), default=0.0)


def _option_passages(option: str, evidence: list[Evidence]) -> list[Evidence]:
    """Return the passages about ``option``, best first.

    A passage scores the word overlap (Jaccard) of ``option`` with its title, less any
    parenthesis such as "(American football)", plus 0.3 when its opening names
    ``option``. It needs at least 0.3. Passages within 0.05 of the best are ordered by
    retrieval score, which separates namesakes by the question's context.
    """
    scored = _scored_option_passages(option, evidence)
    if not scored:
        return []
    best = max(overlap for overlap, _ in scored)
    close = [item for overlap, item in scored if overlap >= best - 0.05]
    close.sort(key=lambda item: item.score, reverse=True)
    rest = [item for overlap, item in sorted(scored, key=lambda pair: -pair[0]) if item not in close]
    return close + rest


def _scored_option_passages(option: str, evidence: list[Evidence]) -> list[tuple[float, Evidence]]:
    option_words = set(normalize_answer(option).split())
    if not option_words:
        return []
    scored: list[tuple[float, Evidence]] = []
    for item in evidence:
        title = set(normalize_answer(re.sub(r"\s*\(.*?\)", "", item.title)).split())
        if not title:
            continue
        overlap = len(option_words & title) / len(option_words | title)
        if normalize_answer(option) in normalize_answer(item.text[:200]):
            overlap += 0.3
        if overlap >= 0.3:
            scored.append((overlap, item))
    return scored


def parse_dates(text: str) -> list[tuple[int, int, int, int, int]]:
    """Return the dates in ``text`` as (year, month, day, start, end); 0 marks a missing part."""
    dates: list[tuple[int, int, int, int, int]] = []
    for match in _DATE.finditer(text):
        groups = match.groupdict()
        year_text = groups["y1"] or groups["y2"] or groups["y3"] or groups["y4"]
        year = int(year_text)
        if groups["y4"] and not groups["era"] and not 1000 <= year <= 2100:
            continue
        if (groups["era"] or "").upper() in ("BC", "BCE"):
            year = -year
        month_text = (groups["m1"] or groups["m2"] or groups["m3"] or "").lower().rstrip(".")
        day_text = groups["d1"] or groups["d2"] or "0"
        dates.append((year, _MONTHS.get(month_text, 0), int(day_text), match.start(), match.end()))
    return dates


def _life_dates(text: str) -> tuple[tuple[int, int, int] | None, tuple[int, int, int] | None, str]:
    """Return (birth, death, quoted source) from a biography's opening parenthesis or "born"."""
    head = text[:400]
    parenthesis = re.search(r"\(([^()]*\d{3,4}[^()]*)\)", head)
    if parenthesis:
        inner = parenthesis.group(1)
        dates = parse_dates(inner)
        born = re.search(r"\b(?:born|b\.)", inner)
        died = re.search(r"\b(?:died|d\.)", inner)
        if dates:
            if born and not died:
                return dates[0][:3], None, inner
            if died and not born:
                return None, dates[-1][:3], inner
            if len(dates) >= 2:
                return dates[0][:3], dates[-1][:3], inner
            return dates[0][:3], None, inner
    born_match = re.search(r"\bborn\b[^.;]{0,60}", text)
    if born_match:
        dates = parse_dates(born_match.group(0))
        if dates:
            return dates[0][:3], None, born_match.group(0)
    return None, None, ""


def _event_date(text: str, question: str) -> tuple[tuple[int, int, int] | None, str]:
    """Return the founding, release or event date of a passage and the sentence it came from.

    The year next to the question's own verb ("released", "formed") wins, then the next
    to any such verb, then the first year of the first sentence ("is a 1945 film").
    """
    lower_question = question.lower()
    question_verbs = [verb for verb in _EVENT_VERBS if verb in lower_question or verb[:-2] in lower_question]
    sentences = re.split(r"(?<=[.!?])\s+", text)
    for verbs in (question_verbs, _EVENT_VERBS):
        for sentence in sentences[:4]:
            lower = sentence.lower()
            for verb in verbs:
                position = lower.find(verb)
                if position < 0:
                    continue
                dates = [d for d in parse_dates(sentence) if abs(d[3] - position) < 60]
                if dates:
                    closest = min(dates, key=lambda d: abs(d[3] - position))
                    return closest[:3], sentence
    for sentence in sentences[:2]:
        dates = parse_dates(sentence)
        if dates:
            return dates[0][:3], sentence
    return None, ""


def _parse_number(match: re.Match[str]) -> float:
    value_text = match.group("value").lower().replace(",", "")
    value = float(_NUMBER_WORDS[value_text]) if value_text in _NUMBER_WORDS else float(value_text)
    scale = (match.group("scale") or "").lower()
    return value * _MULTIPLIERS.get(scale, 1.0)


def _measured_number(text: str, nouns: tuple[str, ...]) -> tuple[float | None, str]:
    """Return the number nearest to one of ``nouns`` in ``text`` and its sentence."""
    stems = {stem(noun) for noun in nouns if noun}
    best: tuple[int, float, str] | None = None
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        words = [(m.start(), stem(m.group(0))) for m in re.finditer(r"[A-Za-z0-9]+", sentence)]
        positions = [start for start, word in words if word in stems]
        if not positions:
            continue
        for match in _NUMBER.finditer(sentence):
            number = _parse_number(match)
            if 1000 <= number <= 2100 and "," not in match.group("value") and not match.group("scale"):
                continue  # a year, not a count
            distance = min(abs(position - match.end()) for position in positions)
            if distance > 60:
                continue
            if best is None or distance < best[0]:
                best = (distance, number, sentence)
    if best is None:
        return None, ""
    return best[1], best[2]


def _format_date(date: tuple[int, int, int]) -> str:
    year, month, day = date
    if month and day:
        return f"{year:04d}-{month:02d}-{day:02d}"
    if month:
        return f"{year:04d}-{month:02d}"
    return f"{year}"


def _option_value(option: str, passage: Evidence, answer_type: AnswerType, question: str) -> tuple[float | None, str]:
    """Return the value ``option`` is ranked by and a short note of where it came from."""
    attribute = answer_type.attribute
    if attribute in ("birth", "death"):
        birth, death, source = _life_dates(passage.text)
        if attribute == "birth" and birth:
            return _date_key(birth), f"born {_format_date(birth)}"
        if attribute == "death" and death:
            return _date_key(death), f"died {_format_date(death)}"
        if attribute == "death" and birth and re.search(r"\((?:born|b\.)", passage.text[:300]):
            # "(born 1970)" with no death date: still living, so later than any death.
            return math.inf, f"born {_format_date(birth)}, no death date"
        if attribute == "birth" and answer_type.option_kind != "person":
            attribute = "date"
        else:
            return None, ""
    if attribute == "date":
        date, sentence = _event_date(passage.text, question)
        if date:
            return _date_key(date), f"dated {_format_date(date)}"
        return None, ""
    nouns = tuple(n for n in (answer_type.focus_head,) if n) + _MEASURE_WORDS.get(answer_type.direction, ())
    value, sentence = _measured_number(passage.text, nouns)
    if value is None:
        return None, ""
    return value, f"{value:g} {answer_type.focus_head or answer_type.direction}".strip()


def _date_key(date: tuple[int, int, int]) -> float:
    """Return a date as fractional years; a missing month or day counts as mid-period."""
    year, month, day = date
    return year + ((month or 6.5) - 1) / 12 + ((day or 15) - 1) / 365


def answer_one_of_two(question: str, answer_type: AnswerType, evidence: list[Evidence], scorer: SpanScorer) -> list[Candidate]:
    """Rank the two options of a which-of-two question."""
    options = list(answer_type.options)
    passages: list[Evidence | None] = []
    values: list[tuple[float | None, str]] = []
    for option in options:
        found = _option_passages(option, evidence)
        passages.append(found[0] if found else None)
        values.append((None, ""))
        if not answer_type.attribute:
            continue
        for passage in found[:3]:
            value = _option_value(option, passage, answer_type, question)
            if value[0] is not None:
                passages[-1], values[-1] = passage, value
                break

    if all(value is not None for value, _ in values) and values[0][0] != values[1][0]:
        numbers = [float(value) for value, _ in values]  # type: ignore[arg-type]
        winner = int(np.argmin(numbers)) if answer_type.pick == "min" else int(np.argmax(numbers))
        gap = abs(numbers[0] - numbers[1])
        notes = [f"{option}: {note}" for option, (_, note) in zip(options, values, strict=True)]
        rule = "smaller" if answer_type.pick == "min" else "larger"
        derivation = f"{'; '.join(notes)}; the {rule} value wins ({answer_type.direction})"
        strength = 1.0 + min(math.log1p(gap), 3.0) / 3.0
        return [
            _comparison_candidate(options[i], strength if i == winner else -strength, answer_type, passages[i], derivation)
            for i in range(2)
        ]

    # No comparable values: the option whose passage matches the rest of the question.
    rest = question
    for option in options:
        rest = rest.replace(option, " ")
    scores = [_passage_support(rest, passage, scorer) if passage else 0.0 for passage in passages]
    scores = [score + _co_mention(option, passages[i], evidence) for i, (option, score) in enumerate(zip(options, scores, strict=True))]
    notes = ", ".join(f"{option}: {score:.2f}" for option, score in zip(options, scores, strict=True))
    if answer_type.attribute:
        found = ", ".join(f"{option}: {note or 'no value found'}" for option, (_, note) in zip(options, values, strict=True))
        derivation = f"values not comparable ({found}); match of each passage to the question: {notes}"
    else:
        derivation = f"match of each passage to the question: {notes}"
    return [
        _comparison_candidate(option, 2.0 * (score - max(scores)) if len(set(scores)) > 1 else 0.0, answer_type, passages[i], derivation)
        for i, (option, score) in enumerate(zip(options, scores, strict=True))
    ]


def _passage_support(query: str, passage: Evidence, scorer: SpanScorer) -> float:
    """Return how well the best sentences of ``passage`` match ``query``."""
    sentences = scorer.rank_sentences(query, [passage], limit=3)
    if not sentences:
        return 0.0
    return max(s.similarity + 0.6 * s.lexical for s in sentences)


def _co_mention(option: str, own: Evidence | None, evidence: list[Evidence]) -> float:
    """Return a small bonus when passages other than the option's own name the option."""
    key = normalize_answer(option)
    if not key:
        return 0.0
    count = sum(1 for item in evidence if item is not own and key in normalize_answer(item.text))
    return 0.1 * min(count, 3)


def _comparison_candidate(text: str, score: float, answer_type: AnswerType, passage: Evidence | None, derivation: str) -> Candidate:
    return Candidate(
        text=text,
        score=score,
        answer_type=answer_type.kind,
        support=[passage.evidence_id] if passage else [],
        sentence=split_first_sentence(passage.text) if passage else "",
        derivation=derivation,
    )


def split_first_sentence(text: str) -> str:
    from solver.candidates import split_sentences

    sentences = split_sentences(text)
    return sentences[0] if sentences else ""


def answer_yes_no(question: str, answer_type: AnswerType, evidence: list[Evidence], scorer: SpanScorer) -> list[Candidate]:
    """Answer "Are X and Y both Z?", "Were X and Y of the same N?" and "Is X Z?"."""
    entities = _best_yes_no_entities(question, evidence)
    passages = [_option_passage(entity, evidence) for entity in entities]
    if answer_type.relation in ("same", "different") and len(entities) >= 2:
        values = [_attribute_value(answer_type.predicate, passage) if passage else "" for passage in passages]
        if all(values):
            same = _same_value(values[0], values[1])
            answer = same if answer_type.relation == "same" else not same
            derivation = "; ".join(f"{entity}: {value}" for entity, value in zip(entities, values, strict=False))
            derivation += f"; {'same' if same else 'different'} {answer_type.predicate}"
            return _yes_no_candidates(answer, 1.0, derivation, passages)
        derivation = f"no {answer_type.predicate or 'value'} found for " + ", ".join(
            entity for entity, value in zip(entities, values, strict=False) if not value
        )
        # NOTE: with no value to compare the answer is a guess of "yes" at zero margin.
        return _yes_no_candidates(True, 0.0, derivation, passages)

    predicate = yes_no_predicate(question, entities)
    supports = [_predicate_support(predicate, passage) if passage else None for passage in passages]
    known = [s for s in supports if s is not None]
    notes = "; ".join(
        f"{entity}: {'no passage' if s is None else f'{s:.2f} of the words of {predicate!r}'}"
        for entity, s in zip(entities, supports, strict=False)
    )
    if not known:
        return _yes_no_candidates(True, 0.0, f"no passage found ({notes})", passages)
    lowest, highest = min(known), max(known)
    answer = lowest >= 0.5 or (highest - lowest < 0.34 and lowest > 0.0)
    strength = abs(lowest - 0.5) + (highest - lowest)
    return _yes_no_candidates(answer, strength, notes, passages)


def _best_yes_no_entities(question: str, evidence: list[Evidence]) -> list[str]:
    """Return the reading of "X and Y" whose two names both have a passage in ``evidence``."""
    best: tuple[float, list[str]] | None = None
    for first, second in yes_no_entity_pairs(question):
        quality = min(_option_match(first, evidence), _option_match(second, evidence))
        if best is None or quality > best[0]:
            best = (quality, [first, second])
    if best is not None and best[0] > 0.0:
        return best[1]
    return yes_no_entities(question)


def _predicate_support(predicate: str, passage: Evidence) -> float:
    """Return the share of the predicate's words found in the passage's opening, in [0, 1].

    A demonym matches its country ("American" and "United States").
    """
    words = content_stems(predicate)
    if not words:
        return 0.0
    opening = " ".join(re.split(r"(?<=[.!?])\s+", passage.text)[:3]) + " " + passage.title
    lower = opening.lower()
    found = set(content_stems(opening))
    hits = 0
    for word in words:
        if word in found:
            hits += 1
            continue
        aliases = _DEMONYMS.get(word, ()) + tuple(d for d, names in _DEMONYMS.items() if word in names)
        if any(re.search(rf"\b{re.escape(alias)}\b", lower) for alias in aliases):
            hits += 1
    return hits / len(words)


def _attribute_value(predicate: str, passage: Evidence) -> str:
    """Return the value of a "same N" attribute (nationality, country, city, year, ...)."""
    from solver.answer_types import load_spacy

    sentences = re.split(r"(?<=[.!?])\s+", passage.text)
    head = predicate.split()[-1] if predicate else ""
    doc = load_spacy()(" ".join(sentences[:2]), disable=["lemmatizer"])
    labels_by_attribute = {
        "nationality": ("NORP", "GPE"), "country": ("NORP", "GPE"), "origin": ("NORP", "GPE"),
        "city": ("GPE",), "state": ("GPE",), "province": ("GPE",), "town": ("GPE",),
        "neighborhood": ("GPE", "LOC", "FAC"), "neighbourhood": ("GPE", "LOC", "FAC"),
        "language": ("LANGUAGE", "NORP"), "year": ("DATE",), "director": ("PERSON",),
        "person": ("PERSON",), "author": ("PERSON",), "writer": ("PERSON",),
    }
    labels = labels_by_attribute.get(head)
    if labels is None and "year" in predicate:
        labels = ("DATE",)
    if labels:
        own = normalize_answer(passage.title)
        for label in labels:
            for ent in doc.ents:
                if ent.label_ == label and normalize_answer(ent.text) not in own:
                    if label == "DATE":
                        dates = parse_dates(ent.text)
                        if dates:
                            return str(dates[0][0])
                        continue
                    return ent.text
        return ""
    # Any other attribute ("family", "genre"): the words after the attribute noun.
    match = re.search(rf"\b{re.escape(head)}\s+(?:of\s+)?([A-Za-z][\w-]*(?:\s+[A-Z][\w-]*)*)", " ".join(sentences[:3]))
    return match.group(1) if match else ""


def _same_value(first: str, second: str) -> bool:
    a, b = normalize_answer(first), normalize_answer(second)
    if a == b:
        return True
    for demonym, names in _DEMONYMS.items():
        group = {demonym, *names}
        if a in group and b in group:
            return True
    return False


def _yes_no_candidates(answer: bool, strength: float, derivation: str, passages: list[Evidence | None]) -> list[Candidate]:
    support = [p.evidence_id for p in passages if p is not None]
    chosen, other = ("yes", "no") if answer else ("no", "yes")
    return [
        Candidate(text=chosen, score=strength, answer_type="yes_no", support=support, derivation=derivation),
        Candidate(text=other, score=-strength, answer_type="yes_no", support=support, derivation=derivation),
    ]


__all__ = [
    "AnswerType",
    "BridgeEntity",
    "EmbeddedReasoner",
    "ReasonResult",
    "Reasoner",
    "answer_one_of_two",
    "answer_yes_no",
    "calibrate_pair",
    "parse_dates",
]
