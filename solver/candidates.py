"""Answer-span extraction and scoring for the embedded reasoner.

Evidence passages are split into sentences, and every sentence gets a cheap lexical
score against the query. Only the best few are embedded and parsed with spaCy. Spans
from those sentences (named entities, proper noun phrases, quoted titles, numbers and
dates) are scored by a fixed linear model over the features in ``SpanFeatures``.
Parsed sentences and sentence vectors are cached by evidence id, so a second hop over
the same passages costs little.
"""

from __future__ import annotations

import math
import re
import string
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from solver.answer_types import AnswerType, load_spacy
from solver.evidence import Candidate, Evidence

if TYPE_CHECKING:
    from spacy.tokens import Doc, Span

# Pipes that span extraction does not use. ``stem`` replaces the lemmatizer.
_DISABLED_PIPES = ("lemmatizer",)

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][a-z]+)?")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation) | {"“", "”", "‘", "’", "–", "—"}
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "inc", "ltd", "co", "corp", "vs", "v",
    "no", "mt", "ft", "gen", "col", "lt", "sgt", "capt", "rev", "prof", "u.s", "u.k",
    "jan", "feb", "mar", "apr", "aug", "sept", "sep", "oct", "nov", "dec", "ave", "bros",
    "e.g", "i.e", "etc", "approx", "est", "fl", "op", "vol", "pp",
}
_QUESTION_WORDS = {
    "what", "which", "who", "whom", "whose", "when", "where", "how", "why", "name",
    "many", "much", "also", "known", "called", "year",
}

# Fit of each spaCy entity label to each answer kind, in [0, 1]. "NP" is a proper noun
# phrase without an entity label, "QUOTE" a quoted title, "COMMON" a common noun phrase.
TYPE_FIT: dict[str, dict[str, float]] = {
    "person": {"PERSON": 1.0, "ORG": 0.35, "NORP": 0.1, "NP": 0.35, "QUOTE": 0.1, "GPE": 0.1, "WORK_OF_ART": 0.15},
    "place": {"GPE": 1.0, "LOC": 1.0, "FAC": 0.9, "ORG": 0.45, "NP": 0.35, "NORP": 0.1, "PERSON": 0.1},
    "date": {"DATE": 1.0, "TIME": 0.3},
    "number": {"CARDINAL": 1.0, "QUANTITY": 1.0, "MONEY": 1.0, "PERCENT": 1.0, "ORDINAL": 0.3, "DATE": 0.1},
    "organisation": {"ORG": 1.0, "NP": 0.45, "PERSON": 0.2, "GPE": 0.25, "FAC": 0.3, "NORP": 0.2, "WORK_OF_ART": 0.2},
    "entity": {
        "WORK_OF_ART": 1.0, "QUOTE": 0.9, "EVENT": 0.85, "PRODUCT": 0.8, "LAW": 0.8,
        "ORG": 0.7, "NORP": 0.25, "FAC": 0.6, "NP": 0.6, "PERSON": 0.5, "GPE": 0.5,
        "LOC": 0.5, "LANGUAGE": 0.6, "COMMON": 0.35, "DATE": 0.05, "CARDINAL": 0.05,
    },
}

# Weights of the linear span score, fitted with ``bench/reader_dev.py --fit`` (softmax
# likelihood of gold spans) on HotpotQA dev questions 0-199 and rounded.
# NOTE: on halves of those questions a refit moved top-1 F1 by less than the noise
# between halves, so these features, not the weights, limit accuracy.
WEIGHTS: dict[str, float] = {
    "relevance": 1.83,
    "sentence_rank": 1.48,
    "type_fit": 2.76,
    "proximity": 0.98,
    "tree_proximity": 1.39,
    "focus": 0.62,
    "echo": -1.27,
    "partial_echo": -0.05,
    "retrieval": -0.41,
    "title": 0.09,
    "title_part": -0.02,
    "named_passage": 0.74,
    "life_date": 0.63,
    "subject": 1.17,
    "parenthesis": -0.44,
    "length": -0.07,
    "focus_similarity": 1.9,
    "agreement": 0.37,
}

# Softmax temperature over span scores and the calibration of the top candidate's
# confidence; see ``calibrate``.
SOFTMAX_TEMPERATURE = 0.5
MARGIN_SCALE = 0.6


def normalize_answer(text: str) -> str:
    """Normalise an answer as SQuAD evaluation does: lower case, no punctuation or articles."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def stem(word: str) -> str:
    """Reduce an English word to a crude stem for matching ("portrayed" -> "portray")."""
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    for suffix, replacement, minimum in (
        ("ies", "y", 5), ("sses", "ss", 5), ("ing", "", 6), ("ed", "", 5),
        ("es", "", 5), ("s", "", 4),
    ):
        if word.endswith(suffix) and len(word) >= minimum and not word.endswith("ss"):
            return word[: -len(suffix)] + replacement
    return word


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS) | _QUESTION_WORDS


def content_stems(text: str) -> list[str]:
    """Return the stems of the content words of ``text``, in order."""
    stop_words = _stop_words()
    return [stem(word) for word in _WORD.findall(text) if word.lower() not in stop_words]


@lru_cache(maxsize=65536)
def _stem_set(text: str) -> frozenset[str]:
    return frozenset(content_stems(text))


def split_sentences(text: str) -> list[str]:
    """Split passage text into sentences at ., ! or ? followed by a capital or a digit.

    A period after an initial ("F. Hugh Herbert") or a common abbreviation ("St.",
    "U.S.") does not end a sentence.
    """
    pieces: list[str] = []
    start = 0
    for match in re.finditer(r"[.!?][\"”')\]]*\s+(?=[\"“'(\[]?[A-Z0-9])", text):
        before = text[start : match.start()].split()
        last = before[-1].lower().rstrip(".") if before else ""
        if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
            continue
        if re.fullmatch(r"(?:[a-z]\.)+[a-z]", last):
            continue
        pieces.append(text[start : match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


class LRUCache:
    """A small least-recently-used mapping."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any | None:
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)


@dataclass
class ScoredSentence:
    """One sentence of an evidence passage with its relevance to a query."""

    evidence: Evidence
    evidence_rank: int  # rank of the passage by retrieval score, 0 is best
    index: int  # position of the sentence in the passage
    text: str
    lexical: float = 0.0  # idf-weighted share of query words found, in [0, 1]
    similarity: float = 0.0  # cosine similarity of query and sentence embeddings
    relevance: float = 0.0  # combined, larger is better
    matched: set[str] = field(default_factory=set)  # query stems found in the sentence


@dataclass
class SpanFeatures:
    """Features of one span occurrence; the linear model in WEIGHTS combines them."""

    relevance: float  # sentence relevance over the best sentence's, in [0, 1]
    sentence_rank: float  # 1 / (1 + rank of the sentence by relevance)
    type_fit: float  # entity label against the expected answer type, in [0, 1]
    proximity: float  # closeness to question words in the sentence, by token count
    tree_proximity: float  # the same along the dependency tree
    focus: float  # closeness to the answer's category noun ("city") in the sentence
    echo: float  # 1 when the question contains the whole span
    partial_echo: float  # share of the span's content words found in the question
    retrieval: float  # 1 / (1 + rank of the passage by retrieval score)
    title: float  # 1 when the span is its passage's title
    title_part: float  # 1 when the span is only a piece of its passage's title
    named_passage: float  # 1 when the query names the subject (title) of the span's passage
    life_date: float  # 1 for the birth or death date a question about birth or death wants
    subject: float  # 1 when the span is the subject of its sentence
    parenthesis: float  # 1 when the span sits inside parentheses
    length: float  # tokens beyond six
    focus_similarity: float = 0.0  # cosine of span and category phrase embeddings
    agreement: float = 0.0  # log of the number of passages giving the same span
    bonus: float = 0.0  # added as is; callers use it for evidence outside these features

    def score(self) -> float:
        return self.bonus + sum(WEIGHTS[name] * getattr(self, name) for name in WEIGHTS)


@dataclass
class SpanOccurrence:
    """One span found in one sentence."""

    text: str
    label: str
    sentence: ScoredSentence
    features: SpanFeatures


class SpanScorer:
    """Rank answer spans in evidence for a query, with cached sentences, vectors and parses.

    ``embed`` maps a list of texts to unit row vectors (``Embedder.embed``).
    """

    def __init__(
        self,
        embed: Callable[[list[str]], np.ndarray],
        *,
        max_sentences: int = 8,
        cache_size: int = 4096,
    ) -> None:
        self.embed = embed
        self.max_sentences = max_sentences
        self._sentences = LRUCache(cache_size)
        self._vectors = LRUCache(cache_size * 4)
        self._docs = LRUCache(cache_size * 4)
        self._query_vectors = LRUCache(256)

    # Sentence relevance -------------------------------------------------------------

    def passage_sentences(self, evidence: Evidence) -> list[str]:
        """Return the sentences of ``evidence``, cached by evidence id and text."""
        key = (evidence.evidence_id, hash(evidence.text))
        cached = self._sentences.get(key)
        if cached is None:
            cached = split_sentences(evidence.text)
            self._sentences.put(key, cached)
        return cached

    def rank_sentences(self, query: str, evidence: list[Evidence], *, limit: int | None = None) -> list[ScoredSentence]:
        """Score every sentence lexically, then embed and rescore the best ``limit``."""
        limit = limit or self.max_sentences
        ranks = _retrieval_ranks(evidence)
        sentences: list[ScoredSentence] = []
        for position, item in enumerate(evidence):
            for index, text in enumerate(self.passage_sentences(item)):
                sentences.append(ScoredSentence(item, ranks[position], index, text))
        if not sentences:
            return []

        query_stems = set(content_stems(query))
        idf = _idf(query_stems, sentences)
        total = sum(idf.get(term, 0.0) for term in query_stems) or 1.0
        for sentence in sentences:
            words = _stem_set(sentence.text) | _stem_set(sentence.evidence.title)
            sentence.matched = query_stems & words
            sentence.lexical = sum(idf[term] for term in sentence.matched) / total
        # The passage rank prior and, for choosing what to embed, a small bonus for
        # opening sentences, which name the passage's subject.
        prior = {id(s): 0.25 / (1 + s.evidence_rank) for s in sentences}
        sentences.sort(key=lambda s: s.lexical + prior[id(s)] + (0.05 if s.index == 0 else 0.0), reverse=True)
        chosen = sentences[:limit]

        vectors = self.sentence_vectors(chosen)
        query_vector = self.query_vector_of(query)
        for sentence, vector in zip(chosen, vectors, strict=True):
            sentence.similarity = float(vector @ query_vector)
            sentence.relevance = sentence.similarity + 0.6 * sentence.lexical + prior[id(sentence)]
        chosen.sort(key=lambda s: s.relevance, reverse=True)
        return chosen

    def query_vector_of(self, query: str) -> np.ndarray:
        """Return the embedding of ``query``, cached."""
        vector = self._query_vectors.get(query)
        if vector is None:
            vector = self.embed([query])[0]
            self._query_vectors.put(query, vector)
        return vector

    def sentence_vectors(self, sentences: list[ScoredSentence]) -> list[np.ndarray]:
        """Return embeddings of "title. sentence" for each sentence, embedding only new ones."""
        keys = [(s.evidence.evidence_id, s.index, hash(s.text)) for s in sentences]
        missing = [i for i, key in enumerate(keys) if self._vectors.get(key) is None]
        if missing:
            texts = [f"{sentences[i].evidence.title}. {sentences[i].text}" for i in missing]
            for i, vector in zip(missing, self.embed(texts), strict=True):
                self._vectors.put(keys[i], vector)
        return [self._vectors.get(key) for key in keys]

    # Parsing ------------------------------------------------------------------------

    def parse(self, sentences: list[ScoredSentence]) -> list[Doc]:
        """Return a spaCy parse of each sentence, parsing only new ones in one batch."""
        keys = [(s.evidence.evidence_id, s.index, hash(s.text)) for s in sentences]
        missing = [i for i, key in enumerate(keys) if self._docs.get(key) is None]
        if missing:
            nlp = load_spacy()
            docs = nlp.pipe([sentences[i].text for i in missing], disable=list(_DISABLED_PIPES))
            for i, doc in zip(missing, docs, strict=True):
                self._docs.put(keys[i], doc)
        return [self._docs.get(key) for key in keys]

    # Spans --------------------------------------------------------------------------

    def score_spans(
        self,
        query: str,
        evidence: list[Evidence],
        answer_type: AnswerType,
        *,
        echo_texts: Iterable[str] = (),
        sentences: list[ScoredSentence] | None = None,
        focus_top: int | None = 8,
    ) -> list[SpanOccurrence]:
        """Return every candidate span occurrence in the best sentences, with features.

        ``echo_texts`` are texts whose words an answer should not repeat, such as the
        original question when ``query`` is a follow-up. Only the ``focus_top`` spans
        with the best other features get an embedding for ``focus_similarity``; None
        embeds all of them.
        """
        sentences = sentences if sentences is not None else self.rank_sentences(query, evidence)
        if not sentences:
            return []
        docs = self.parse(sentences)
        best_relevance = max(s.relevance for s in sentences) or 1.0
        focus_stems = {stem(word) for word in answer_type.focus}
        if answer_type.focus_head:
            focus_stems.add(stem(answer_type.focus_head))
        # Words of the answer's own description ("what New York city") are no echo.
        echo_stems = set(content_stems(query)) - focus_stems
        echo_lower = _remove_words(query.lower(), answer_type.focus)
        echo_names = _capitalised_names(query)
        for text in echo_texts:
            echo_stems |= set(content_stems(text)) - focus_stems
            echo_lower += " " + _remove_words(text.lower(), answer_type.focus)
            echo_names += _capitalised_names(text)
        focus_lower = " ".join(answer_type.focus)
        echo_names = [name for name in echo_names if name not in focus_lower]

        life_event = _life_event(" ".join([query, *echo_texts]))
        query_key = f" {normalize_answer(query)} "
        occurrences: list[SpanOccurrence] = []
        for sentence_rank, (sentence, doc) in enumerate(zip(sentences, docs, strict=True)):
            relevance = max(sentence.relevance, 0.0) / best_relevance
            title_stems = _stem_set(sentence.evidence.title)
            matched_positions = [
                t.i for t in doc
                if not t.is_stop and stem(t.text) in sentence.matched and stem(t.text) not in title_stems
            ]
            focus_positions = [t.i for t in doc if stem(t.text) in focus_stems]
            parenthesised = _parenthesised(doc)
            title_key = normalize_answer(sentence.evidence.title)
            subject_key = normalize_answer(re.sub(r"\s*\(.*?\)\s*$", "", sentence.evidence.title))
            named_passage = 1.0 if subject_key and f" {subject_key} " in query_key else 0.0
            life_dates = _life_date_spans(doc, life_event) if life_event else set()
            title_mentions = _mentions(doc, re.sub(r"\s*\(.*?\)\s*$", "", sentence.evidence.title))
            for span, label in extract_spans(doc, answer_type):
                text = span.text.strip(" ,;:")
                if not text or not normalize_answer(text):
                    continue
                if any(start <= span.start_char and span.end_char <= end and end - start > len(span.text) for start, end in title_mentions):
                    continue  # a piece of the passage's own name, such as "Kiss" in "Kiss and Tell"
                features = SpanFeatures(
                    relevance=relevance,
                    sentence_rank=1.0 / (1 + sentence_rank),
                    type_fit=type_fit(label, span, answer_type),
                    proximity=_proximity(span, matched_positions),
                    tree_proximity=_tree_proximity(span, matched_positions),
                    focus=_focus_fit(span, focus_positions),
                    echo=_echo(text, echo_lower, echo_names),
                    partial_echo=_partial_echo(text, echo_stems),
                    retrieval=1.0 / (1 + sentence.evidence_rank),
                    title=1.0 if normalize_answer(text) == title_key else 0.0,
                    named_passage=named_passage,
                    title_part=1.0 if normalize_answer(text) != title_key and normalize_answer(text) in title_key else 0.0,
                    life_date=1.0 if (span.start, span.end) in life_dates else 0.0,
                    subject=1.0 if span.root.dep_ in ("nsubj", "nsubjpass") and span.root.head.dep_ == "ROOT" else 0.0,
                    parenthesis=1.0 if span.start in parenthesised else 0.0,
                    length=max(0, len(span) - 6),
                )
                occurrences.append(SpanOccurrence(text, label, sentence, features))
        self._add_focus_similarity(occurrences, answer_type, top=focus_top)
        return occurrences

    def _add_focus_similarity(self, occurrences: list[SpanOccurrence], answer_type: AnswerType, *, top: int | None) -> None:
        """Set ``focus_similarity`` for the ``top`` span texts by the other features."""
        if not answer_type.focus or not occurrences:
            return
        ranked = sorted(occurrences, key=lambda o: o.features.score(), reverse=True)
        texts = list(dict.fromkeys(o.text for o in ranked))
        if top is not None:
            texts = texts[:top]
        vectors = self._span_vectors([" ".join(answer_type.focus), *texts])
        similarity = {text: float(vector @ vectors[0]) for text, vector in zip(texts, vectors[1:], strict=True)}
        for occurrence in occurrences:
            occurrence.features.focus_similarity = similarity.get(occurrence.text, 0.0)

    def _span_vectors(self, texts: list[str]) -> list[np.ndarray]:
        missing = [text for text in dict.fromkeys(texts) if self._vectors.get(("span", text)) is None]
        if missing:
            for text, vector in zip(missing, self.embed(missing), strict=True):
                self._vectors.put(("span", text), vector)
        return [self._vectors.get(("span", text)) for text in texts]


def _mentions(doc: Doc, name: str) -> list[tuple[int, int]]:
    """Return the character offsets of each occurrence of ``name`` in ``doc``."""
    if not name.strip():
        return []
    pattern = rf"(?<!\w){re.escape(name.strip())}(?!\w)"
    return [(m.start(), m.end()) for m in re.finditer(pattern, doc.text)]


def _retrieval_ranks(evidence: list[Evidence]) -> list[int]:
    order = sorted(range(len(evidence)), key=lambda i: evidence[i].score, reverse=True)
    ranks = [0] * len(evidence)
    for rank, index in enumerate(order):
        ranks[index] = rank
    return ranks


def _idf(query_stems: set[str], sentences: list[ScoredSentence]) -> dict[str, float]:
    """Inverse document frequency of each query stem over the evidence sentences."""
    count = len(sentences)
    frequency = dict.fromkeys(query_stems, 0)
    for sentence in sentences:
        words = _stem_set(sentence.text) | _stem_set(sentence.evidence.title)
        for term in query_stems & words:
            frequency[term] += 1
    return {term: math.log(1 + count / (1 + df)) for term, df in frequency.items()}


_NUMERIC_LABELS = {"DATE", "TIME", "CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT"}
_MONTH_NAMES = {
    "january", "february", "march", "april", "may", "june", "july", "august",
    "september", "october", "november", "december",
}
# Answers to English questions are written with at least one Latin letter or digit.
_LATIN = re.compile(r"[A-Za-z0-9]")
_PROPER_JOINERS = {"of", "the", "and", "de", "for", "&", "du", "des", "von", "van", "la", "le", "del", "da", "on", "in"}


def extract_spans(doc: Doc, answer_type: AnswerType) -> list[tuple[Span, str]]:
    """Return candidate spans of ``doc`` with a label: spaCy's entity label, "NP",
    "QUOTE" or "COMMON"."""
    spans: list[tuple[Span, str]] = []
    seen: set[tuple[int, int]] = set()

    def add(span: Span, label: str) -> None:
        key = (span.start, span.end)
        if key in seen or len(span) == 0:
            return
        seen.add(key)
        spans.append((span, label))

    numeric = {t.i for ent in doc.ents if ent.label_ in _NUMERIC_LABELS for t in ent}
    for ent in doc.ents:
        add(_trim(ent), ent.label_)
    for span in _proper_runs(doc):
        if not any(t.i in numeric or t.lower_ in _MONTH_NAMES for t in span):
            add(span, "NP")
    for span in _quoted(doc):
        add(span, "QUOTE")
    if answer_type.kind in ("entity", "organisation"):
        for chunk in doc.noun_chunks:
            trimmed = _trim(chunk)
            if any(t.i in numeric or t.lower_ in _MONTH_NAMES for t in trimmed):
                continue
            if len(trimmed) and not any(t.pos_ == "PRON" for t in trimmed):
                add(trimmed, "COMMON" if not any(t.pos_ == "PROPN" for t in trimmed) else "NP")
    return [(span, label) for span, label in spans if _LATIN.search(span.text)]


def _trim(span: Span) -> Span:
    start, end = span.start, span.end
    doc = span.doc
    while start < end and (doc[start].pos_ in ("DET", "PUNCT") or doc[start].lower_ in ("'s", "’s")):
        start += 1
    while end > start and (doc[end - 1].pos_ == "PUNCT" or doc[end - 1].lower_ in ("'s", "’s")):
        end -= 1
    return doc[start:end]


def _proper_runs(doc: Doc) -> list[Span]:
    """Return maximal runs of proper nouns, joined across "of", "the", "and" ("Chief of Protocol")."""
    runs: list[Span] = []
    i = 0
    tokens = list(doc)
    while i < len(tokens):
        if tokens[i].pos_ != "PROPN":
            i += 1
            continue
        start = i
        end = i + 1
        while end < len(tokens):
            token = tokens[end]
            if token.pos_ == "PROPN" or (token.text[:1].isupper() and token.pos_ in ("NOUN", "ADJ", "NUM")):
                end += 1
                continue
            if token.lower_ in _PROPER_JOINERS and end + 1 < len(tokens) and tokens[end + 1].pos_ == "PROPN":
                end += 1
                continue
            break
        runs.append(doc[start:end])
        i = end
    return runs


def _quoted(doc: Doc) -> list[Span]:
    spans: list[Span] = []
    opening: int | None = None
    for token in doc:
        if token.text in ('"', "“", "”"):
            if opening is None:
                opening = token.i
            else:
                if 0 < token.i - opening - 1 <= 12:
                    spans.append(doc[opening + 1 : token.i])
                opening = None
    return spans


def type_fit(label: str, span: Span, answer_type: AnswerType) -> float:
    """Return how well a span with ``label`` fits the expected answer, in [0, 1]."""
    if answer_type.labels and answer_type.labels[0] in ("NORP", "LANGUAGE"):
        return 1.0 if label in answer_type.labels else 0.1
    table = TYPE_FIT.get(answer_type.kind, TYPE_FIT["entity"])
    fit = table.get(label, 0.0)
    if answer_type.kind == "date" and label == "DATE" and not any(t.like_num for t in span):
        fit = 0.4
    if answer_type.focus_head == "year" and label == "DATE" and not re.search(r"\d{3,4}", span.text):
        fit = 0.1
    if answer_type.focus_head in ("years", "timeframe", "period", "span", "tenure") and label == "DATE":
        # A question about a period wants a range ("from 1969 until 1974").
        fit = 1.0 if len(re.findall(r"\d{3,4}", span.text)) >= 2 else 0.5
    if answer_type.kind == "number" and label == "DATE":
        fit = 0.1
    return fit


def _proximity(span: Span, matched_positions: list[int]) -> float:
    """Return closeness of ``span`` to the question words in its sentence, in [0, 1]."""
    if not matched_positions:
        return 0.0
    distances = sorted(
        0 if span.start <= position < span.end else min(abs(position - span.start), abs(position - (span.end - 1)))
        for position in matched_positions
        if not span.start <= position < span.end
    )
    if not distances:
        return 0.0
    closest = distances[:3]
    return sum(1.0 / (1.0 + d / 4.0) for d in closest) / 3.0


def _tree_proximity(span: Span, matched_positions: list[int]) -> float:
    """Return 1 / (1 + d) for the fewest dependency arcs d from the span to a question word."""
    outside = [p for p in matched_positions if not span.start <= p < span.end]
    if not outside:
        return 0.0
    doc = span.doc
    root_path = [span.root, *span.root.ancestors]
    depth_of = {token.i: depth for depth, token in enumerate(root_path)}
    best = None
    for position in outside:
        steps = 0
        for token in [doc[position], *doc[position].ancestors]:
            if token.i in depth_of:
                distance = steps + depth_of[token.i]
                best = distance if best is None else min(best, distance)
                break
            steps += 1
    return 0.0 if best is None else 1.0 / (1.0 + best)


def _parenthesised(doc: Doc) -> set[int]:
    inside: set[int] = set()
    depth = 0
    for token in doc:
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth = max(depth - 1, 0)
        elif depth:
            inside.add(token.i)
    return inside


def _focus_fit(span: Span, focus_positions: list[int]) -> float:
    outside = [p for p in focus_positions if not span.start <= p < span.end]
    if not outside:
        return 0.0
    distance = min(min(abs(p - span.start), abs(p - (span.end - 1))) for p in outside)
    return 1.0 / (1.0 + distance / 2.0)


def _remove_words(text: str, words: Iterable[str]) -> str:
    for word in words:
        text = re.sub(rf"\b{re.escape(word)}\b", " ", text)
    return text


def _echo(text: str, echo_lower: str, echo_names: list[str]) -> float:
    """Return 1 when the query contains the span, or the span contains a name of the query.

    The second case catches longer forms of a name the query already uses ("Shirley
    Temple Black" for a query about "Shirley Temple").
    """
    lower = text.lower()
    if re.search(rf"(?<!\w){re.escape(lower)}(?!\w)", echo_lower):
        return 1.0
    if any(re.search(rf"(?<!\w){re.escape(name)}(?!\w)", lower) for name in echo_names):
        return 1.0
    return 0.0


def _capitalised_names(text: str) -> list[str]:
    """Return runs of two or more capitalised words in ``text``, lower-cased."""
    from spacy.lang.en.stop_words import STOP_WORDS

    names = []
    for run in re.findall(r"(?:[A-Z][\w'’.-]*\s+){1,}[A-Z][\w'’.-]*", text):
        words = run.split()
        while words and words[0].lower() in STOP_WORDS:
            words.pop(0)
        if len(words) >= 2:
            names.append(" ".join(words).lower())
    return names


def _partial_echo(text: str, echo_stems: set[str]) -> float:
    stems = content_stems(text)
    if not stems:
        return 0.0
    return sum(term in echo_stems for term in stems) / len(stems)


def _life_event(query: str) -> str:
    """Return "birth" or "death" when the query is about when someone was born or died."""
    lower = query.lower()
    if re.search(r"\b(?:born|birth)\b", lower):
        return "birth"
    if re.search(r"\b(?:die|died|death)\b", lower):
        return "death"
    return ""


def _life_date_spans(doc: Doc, event: str) -> set[tuple[int, int]]:
    """Return the DATE spans that give the birth or death in "Name (date – date)" or "born date".

    Biographies open with the life dates in a parenthesis after the name. The first
    date there is the birth, and the last (after a dash) is the death.
    """
    dates = [ent for ent in doc.ents if ent.label_ == "DATE"]
    found: set[tuple[int, int]] = set()
    parenthesised = _parenthesised(doc)
    inside = [ent for ent in dates if ent.start in parenthesised and ent.start < 40]
    if inside:
        chosen = inside[0] if event == "birth" else inside[-1]
        if event == "birth" or len(inside) > 1:
            found.add((chosen.start, chosen.end))
    for ent in dates:
        previous = doc[max(ent.start - 2, 0) : ent.start].text.lower()
        if (event == "birth" and "born" in previous) or (event == "death" and "died" in previous):
            found.add((ent.start, ent.end))
    return found


def merge_occurrences(occurrences: list[SpanOccurrence], answer_type: AnswerType) -> list[Candidate]:
    """Merge occurrences with the same normalised text into scored candidates, best first.

    A candidate keeps its best occurrence's score plus the agreement bonus for each
    further passage that gives the same span.
    """
    groups: dict[str, list[SpanOccurrence]] = {}
    for occurrence in occurrences:
        groups.setdefault(normalize_answer(occurrence.text), []).append(occurrence)
    candidates: list[Candidate] = []
    for group in groups.values():
        best = max(group, key=lambda o: o.features.score())
        passages = {o.sentence.evidence.evidence_id for o in group}
        best.features.agreement = math.log(len(passages))
        support = [best.sentence.evidence.evidence_id] + sorted(passages - {best.sentence.evidence.evidence_id})
        candidates.append(
            Candidate(
                text=best.text,
                score=best.features.score(),
                answer_type=answer_type.kind,
                support=support,
                sentence=best.sentence.text,
            )
        )
    candidates.sort(key=lambda c: c.score, reverse=True)
    return candidates


def calibrate(candidates: list[Candidate]) -> list[Candidate]:
    """Set each candidate's confidence from the softmax of scores and the top-two margin.

    With scores s_1 >= s_2 >= ... and p_i = exp(s_i / T) / sum_j exp(s_j / T), every
    candidate gets c_i = p_i * g with g = 0.5 + 0.5 * tanh((s_1 - s_2) / M), where T is
    SOFTMAX_TEMPERATURE and M is MARGIN_SCALE; a lone candidate uses s_2 = s_1 - M. A
    close race thus lowers all confidences, they keep the score order, and they sum to
    g <= 1, leaving 1 - g for "none of these".
    """
    if not candidates:
        return candidates
    candidates.sort(key=lambda c: c.score, reverse=True)
    scores = np.array([c.score for c in candidates], dtype=np.float64)
    shifted = np.exp((scores - scores.max()) / SOFTMAX_TEMPERATURE)
    shares = shifted / shifted.sum()
    margin = scores[0] - scores[1] if len(scores) > 1 else MARGIN_SCALE
    factor = 0.5 + 0.5 * math.tanh(margin / MARGIN_SCALE)
    for candidate, share in zip(candidates, shares, strict=True):
        candidate.confidence = float(share * factor)
    return candidates
