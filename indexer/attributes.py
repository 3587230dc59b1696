"""Attribute extraction: dates, places, types and measured numbers stated about an entity.

Works on one parsed sentence at a time with the spaCy dependency parse, the spaCy entities
and the document's graph mentions (already mapped to their canonical keys). Patterns:

- ``(born April 23, 1928)``, ``(April 23, 1928 – February 10, 2014)``, ``(1928–2014)``,
  "born on/in DATE", "died on/in DATE" give ``birth_date`` and ``death_date``.
- "born in PLACE" and "died in PLACE" give ``birth_place`` and ``death_place``.
- "founded/established/formed in DATE" gives ``founded``, and
  "located/based/headquartered/situated in PLACE" gives ``location``.
- "X is/was a(n) [NORP] ... NOUN" gives ``type`` (the noun and nouns joined to it by
  "and") and ``nationality`` (the NORP entity).
- MONEY, QUANTITY, PERCENT and CARDINAL entities attached to a noun ("a population of
  12,345", "12,000 employees"), to a dimension adjective ("1,200 km long") or as the
  object of a verb ("grossed $100 million") give a number with its unit.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from spacy.symbols import ADJ, ADP, NOUN, PROPN, VERB
from spacy.tokens import Doc, Span

PLACE_LABELS = frozenset({"GPE", "LOC", "FAC"})
NUMBER_LABELS = frozenset({"MONEY", "QUANTITY", "PERCENT", "CARDINAL"})
SUBJECT_LABELS = frozenset({"PERSON", "ORG", "GPE"})
SUBJECT_PRONOUNS = frozenset({"he", "she", "it", "they"})
POSSESSIVE_PRONOUNS = frozenset({"his", "her", "its", "their"})
RELATIVE_PRONOUNS = frozenset({"who", "which", "that", "whom"})
DATE_PREPOSITIONS = frozenset({"in", "on", "at", "around", "circa", "c.", "about", "during"})
PLACE_PREPOSITIONS = frozenset({"in", "at"})

# Verb lemma -> (attribute for a date, attribute for a place). None means not extracted.
ANCHOR_VERBS = {
    "bear": ("birth_date", "birth_place"),
    "die": ("death_date", "death_place"),
    "found": ("founded", None),
    "establish": ("founded", None),
    "form": ("founded", None),
    "locate": (None, "location"),
    "base": (None, "location"),
    "headquarter": (None, "location"),
    "situate": (None, "location"),
}

# "6,650 km long" names the length, "1,642 m deep" the depth.
DIMENSION_ADJECTIVES = {
    "long": "length",
    "tall": "height",
    "high": "height",
    "wide": "width",
    "deep": "depth",
    "old": "age",
    "thick": "thickness",
    "heavy": "weight",
}

# Common measurement units, used to tell "1,642 m" (a unit) from "12,000 employees" (a noun).
UNIT_WORDS = frozenset(
    {
        "km", "m", "cm", "mm", "mi", "ft", "in", "yd", "nm", "km2", "m2", "mi2", "sq",
        "kilometre", "kilometres", "kilometer", "kilometers", "metre", "metres", "meter",
        "meters", "centimetres", "centimeters", "mile", "miles", "foot", "feet", "inch",
        "inches", "yard", "yards", "acre", "acres", "hectare", "hectares", "ha", "kg", "g",
        "lb", "lbs", "kilogram", "kilograms", "gram", "grams", "tonne", "tonnes", "ton", "tons",
        "pound", "pounds", "litre", "litres", "liter", "liters", "l", "gallon", "gallons",
        "°c", "°f", "degrees", "mph", "kph", "km/h", "knots", "hz", "mhz", "ghz", "kw", "mw",
        "gw", "w", "watts", "seconds", "minutes", "hours", "days", "years", "percent",
    }
)

_MONTH_NUMBERS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4,
    "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sep": 9, "sept": 9, "october": 10, "oct": 10, "november": 11,
    "nov": 11, "december": 12, "dec": 12,
}
# Month names must be capitalised so the modal "may" never reads as a month.
_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?"
)
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
# A year has 3 or 4 digits and no letter after it, so "1990s" is a decade and is skipped.
_YEAR = r"\d{3,4}(?![\w\d])"
_ERA_BC = re.compile(r"\s*(?:BC|BCE|B\.C\.)(?!\w)")  # used with match(), which anchors at pos
_SINGLE_DATE = re.compile(
    rf"(?P<m1>{_MONTH})\s+(?P<d1>{_DAY}),?\s+(?P<y1>{_YEAR})"
    rf"|(?P<d2>{_DAY})\s+(?:of\s+)?(?P<m2>{_MONTH}),?\s+(?P<y2>{_YEAR})"
    rf"|(?P<y4>\d{{4}})-(?P<n4>\d{{2}})-(?P<d4>\d{{2}})(?!\d)"
    rf"|(?P<m3>{_MONTH}),?\s+(?P<y3>{_YEAR})"
    rf"|(?<![\w\d.,])(?P<y5>{_YEAR})"
)
# The same shapes without groups, for building range patterns.
_DATE = (
    rf"(?:{_MONTH}\s+{_DAY},?\s+{_YEAR}|{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}"
    rf"|\d{{4}}-\d{{2}}-\d{{2}}|{_MONTH},?\s+{_YEAR}|{_YEAR})"
)
_APPROXIMATE = r"(?:(?:c\.|ca\.|circa|about)\s*)?"
_LIFESPAN = re.compile(rf"^{_APPROXIMATE}({_DATE})\s*(?:[-–—]|to)\s*{_APPROXIMATE}({_DATE})$")
_BORN = re.compile(rf"^(?:born|b\.)\s+(?:on\s+|in\s+)?{_APPROXIMATE}({_DATE})")
_DIED = re.compile(rf"^(?:died|d\.)\s+(?:on\s+|in\s+)?{_APPROXIMATE}({_DATE})")
_PARENTHESIS = re.compile(r"\(([^()]{1,300})\)")
_PARENTHESIS_PART = re.compile(r"[^;\s][^;]*")

_DIGITS = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_WORD_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "dozen": 12,
}
_WORD_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}
_WORD_NUMBER = re.compile(
    r"\b(?:(?P<tens>" + "|".join(_WORD_TENS) + r")(?:[- ](?P<tail>" + "|".join(_WORD_UNITS) + r"))?"
    r"|(?P<unit>" + "|".join(_WORD_UNITS) + r"))\b",
    re.IGNORECASE,
)
_SCALES = {"hundred": 1e2, "thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
# Short scale suffixes, read only in MONEY entities ("$5m", "£2bn") where "m" cannot be metres.
_MONEY_SUFFIXES = {"k": 1e3, "m": 1e6, "mn": 1e6, "bn": 1e9}
_CURRENCY_SYMBOL = re.compile(r"(?:[A-Z]{1,3})?[$£€¥₹₩₽]")
_RANGE_TAIL = re.compile(r"^\s*(?:[-–—]|to|and)\s*[\d.,]+")
_MONEY_SUFFIX = re.compile(r"^(k|m|mn|bn)\b", re.IGNORECASE)


def parse_date(text: str) -> tuple[str, str] | None:
    """Find the first date in ``text`` and return (ISO date, the matched text).

    The ISO date is as precise as the text: "1928", "1928-04" or "1928-04-23". Years
    before 1000 are zero-padded ("0926"). Dates marked BC and impossible days return None.
    """
    for match in _SINGLE_DATE.finditer(text):
        if _ERA_BC.match(text, match.end()):
            continue
        iso = _iso_from_match(match)
        if iso is not None:
            return iso, match.group(0)
    return None


def _iso_from_match(match: re.Match) -> str | None:
    groups = match.groupdict()
    if groups["y1"]:
        return _iso(groups["y1"], groups["m1"], groups["d1"])
    if groups["y2"]:
        return _iso(groups["y2"], groups["m2"], groups["d2"])
    if groups["y4"]:
        return _iso(groups["y4"], int(groups["n4"]), groups["d4"])
    if groups["y3"]:
        return _iso(groups["y3"], groups["m3"], None)
    return _iso(groups["y5"], None, None)


def _iso(year_text: str, month: str | int | None, day_text: str | None) -> str | None:
    year = int(year_text)
    if year < 1:
        return None
    if month is None:
        return f"{year:04d}"
    if isinstance(month, str):
        month = _MONTH_NUMBERS[month.rstrip(".").lower()]
    if not 1 <= month <= 12:
        return None
    if day_text is None:
        return f"{year:04d}-{month:02d}"
    day = int(re.match(r"\d+", day_text).group(0))
    try:
        return datetime.date(year, month, day).isoformat()
    except ValueError:
        return None


def parse_number(text: str, label: str) -> tuple[float, str | None] | None:
    """Parse a MONEY, QUANTITY, PERCENT or CARDINAL entity text into (number, unit).

    Reads digits with thousands separators ("12,345"), number words ("twenty-five") and
    scale words ("$1.2 billion" is 1.2e9). The unit is "%" for percentages, the currency
    symbol or word for money, the words after the number for quantities, and None for
    plain counts. A range ("5–10 km") yields its first number.
    """
    match = _DIGITS.search(text)
    if match is not None:
        number = float(match.group(0).replace(",", ""))
    else:
        match = _WORD_NUMBER.search(text)
        if match is None:
            return None
        if match.group("tens"):
            number = float(_WORD_TENS[match.group("tens").lower()])
            if match.group("tail"):
                number += _WORD_UNITS[match.group("tail").lower()]
        else:
            number = float(_WORD_UNITS[match.group("unit").lower()])
    prefix = text[: match.start()]
    suffix = _RANGE_TAIL.sub("", text[match.end() :])

    if label == "MONEY":
        short_scale = _MONEY_SUFFIX.match(suffix)
        if short_scale:
            number *= _MONEY_SUFFIXES[short_scale.group(1).lower()]
            suffix = suffix[short_scale.end() :]
    words = suffix.split()
    while words and words[0].lower() in _SCALES:
        number *= _SCALES[words.pop(0).lower()]

    unit: str | None = None
    if label == "PERCENT":
        unit = "%"
    elif label == "MONEY":
        symbol = _CURRENCY_SYMBOL.search(prefix)
        if symbol is not None:
            unit = symbol.group(0)
        elif words:
            unit = " ".join(words[:2]).strip(".,;:")
    elif label == "QUANTITY" and words:
        unit = " ".join(words[:3]).strip(".,;:")
    return number, unit or None


@dataclass
class GraphMention:
    """A graph entity mention inside one parsed segment, with its canonical key."""

    key: str
    label: str
    start: int  # token index in the segment's spaCy Doc
    end: int  # exclusive
    root: int
    char_start: int  # character offsets into Document.text
    char_end: int


@dataclass
class ParsedSegment:
    """A spaCy Doc of one segment of a document, with its parse as flat Python lists.

    The lists make walks up the dependency tree cheap: ``heads`` contains absolute token
    indices, ``pos`` and ``deps`` contain spaCy symbol ids and ``lemmas`` string hashes.
    """

    doc: Doc
    text: str  # the segment's text, because Doc.text rebuilds the string on every access
    offset: int  # character offset of the segment in Document.text
    is_table: bool
    heads: list[int]
    pos: list[int]
    deps: list[int]
    lemmas: list[int]


@dataclass
class SentenceView:
    """One sentence (or table row) of a parsed segment, with the entities found in it."""

    segment: ParsedSegment
    start: int  # token range in the segment's Doc
    end: int
    char_start: int  # character offsets into Document.text
    char_end: int
    is_first: bool  # first sentence of the document
    mentions: list[GraphMention]
    entities: list[Span]  # all spaCy entities, including dates and numbers
    mention_at: dict[int, GraphMention] = field(default_factory=dict)  # token index -> mention

    def __post_init__(self) -> None:
        for mention in self.mentions:
            for index in range(mention.start, mention.end):
                self.mention_at[index] = mention


@dataclass
class DocumentFacts:
    """Document-level facts that attribute extraction reads and updates."""

    title_key: str | None
    person_keys: set[str]  # keys with at least one PERSON mention
    title_types: set[str] = field(default_factory=set)  # lemmas of the title entity's type nouns


@dataclass
class FoundAttribute:
    """An attribute found in a sentence, before chunk ids and display names are attached."""

    entity_key: str
    attribute: str
    value: str
    value_type: str
    char_start: int  # evidence span in Document.text
    char_end: int
    number: float | None = None
    unit: str | None = None
    date: str | None = None


class AttributeExtractor:
    """Extract attributes from sentences of documents parsed with one spaCy vocabulary."""

    def __init__(self, vocab) -> None:
        strings = vocab.strings
        self._dep = {name: strings[name] for name in (
            "nsubj", "nsubjpass", "attr", "det", "conj", "prep", "pobj", "poss", "relcl",
            "npadvmod", "nummod", "compound", "dobj", "acomp", "quantmod", "appos", "amod",
        )}
        self._be = strings["be"]
        self._have = strings["have"]
        self._anchors = {strings[lemma]: names for lemma, names in ANCHOR_VERBS.items()}

    def extract(self, view: SentenceView, facts: DocumentFacts) -> list[FoundAttribute]:
        """Return the attributes stated in one sentence, without duplicates.

        Type attributes of the title entity are added to ``facts.title_types``, so later
        sentences can read "the band" as the title entity.
        """
        found: list[FoundAttribute] = []
        found += self._types(view, facts)
        found += self._parenthetical_dates(view, facts)
        found += self._anchored(view, facts)
        found += self._measurements(view, facts)

        unique: list[FoundAttribute] = []
        seen: set[tuple] = set()
        for item in found:
            identity = (item.entity_key, item.attribute, item.date or item.number or item.value.lower())
            if identity not in seen:
                seen.add(identity)
                unique.append(item)
        return unique

    # Subjects

    def _subject_token(self, view: SentenceView, token: int) -> int | None:
        """Walk up from ``token`` to the subject of its clause.

        Returns the first ancestor that is a mention, or the nominal subject of the nearest
        clause. A relative pronoun subject ("who was born") is replaced by the noun that the
        relative clause modifies.
        """
        segment = view.segment
        node = token
        subject_deps = (self._dep["nsubj"], self._dep["nsubjpass"])
        while True:
            if node != token and node in view.mention_at:
                return node
            subject = next((child.i for child in segment.doc[node].children if child.dep in subject_deps), None)
            if subject is not None:
                is_relative = segment.doc[subject].lower_ in RELATIVE_PRONOUNS
                if not (is_relative and segment.deps[node] == self._dep["relcl"]):
                    return subject
            head = segment.heads[node]
            if head == node or not view.start <= head < view.end:
                return None
            node = head

    def _resolve_subject(self, view: SentenceView, facts: DocumentFacts, token: int, char_pos: int) -> str | None:
        """Return the key of the entity a pattern at ``token`` is about, or None.

        The rules, first match wins:

        - the mention right before an enclosing parenthesis;
        - the clause subject, if it is a mention;
        - the title entity, if that subject is he/she/it/they or a definite noun that
          names the title's type ("the band");
        - the title entity, in the document's first sentence after a title mention;
        - the nearest preceding PERSON, ORG or GPE mention that is a nominal subject.
        """
        owner = self._parenthesis_owner(view, char_pos)
        if owner is not None:
            return owner

        segment = view.segment
        subject = self._subject_token(view, token)
        if subject is not None:
            if subject in view.mention_at:
                return view.mention_at[subject].key
            word = segment.doc[subject]
            if word.lower_ in SUBJECT_PRONOUNS and facts.title_key:
                return facts.title_key
            if self._names_title_type(word, facts):
                return facts.title_key

        if view.is_first and facts.title_key:
            for mention in view.mentions:
                if mention.key == facts.title_key and mention.start < token:
                    return facts.title_key

        subject_deps = (self._dep["nsubj"], self._dep["nsubjpass"])
        for mention in reversed(view.mentions):
            if mention.start < token and mention.label in SUBJECT_LABELS and segment.deps[mention.root] in subject_deps:
                return mention.key
        return None

    def _names_title_type(self, word, facts: DocumentFacts) -> bool:
        if not facts.title_key or word.pos not in (NOUN, PROPN):
            return False
        if word.lemma_.lower() not in facts.title_types:
            return False
        return any(child.dep == self._dep["det"] and child.lower_ in ("the", "this") for child in word.children)

    def _parenthesis_owner(self, view: SentenceView, char_pos: int) -> str | None:
        """Return the key of the mention that ends right before the parenthesis around ``char_pos``."""
        text = view.segment.text
        local = char_pos - view.segment.offset
        open_index = text.rfind("(", view.segment.doc[view.start].idx, local + 1)
        if open_index == -1:
            return None
        close_index = text.find(")", open_index)
        if close_index != -1 and close_index < local:
            return None
        end = open_index
        while end > 0 and text[end - 1].isspace():
            end -= 1
        end += view.segment.offset
        for mention in view.mentions:
            if mention.char_end == end:
                return mention.key
        return None

    # Patterns

    def _types(self, view: SentenceView, facts: DocumentFacts) -> list[FoundAttribute]:
        """Find "X is a(n) [NORP] NOUN" and return type and nationality attributes."""
        segment = view.segment
        doc = segment.doc
        found: list[FoundAttribute] = []
        for index in range(view.start, view.end):
            if segment.deps[index] != self._dep["attr"] or segment.pos[index] != NOUN:
                continue
            copula = segment.heads[index]
            if segment.lemmas[copula] != self._be:
                continue
            noun = doc[index]
            if not any(child.dep == self._dep["det"] and child.lower_ in ("a", "an") for child in noun.children):
                continue
            key = self._resolve_subject(view, facts, copula, doc[copula].idx + segment.offset)
            if key is None:
                continue

            for type_token in self._conjoined_nouns(noun):
                start = type_token.idx + segment.offset
                found.append(FoundAttribute(key, "type", type_token.text, "text", start, start + len(type_token.text)))
                if key == facts.title_key:
                    facts.title_types.add(type_token.lemma_.lower())

            nationality = self._nationality(view, noun)
            if nationality is not None:
                start = nationality.start_char + segment.offset
                found.append(FoundAttribute(key, "nationality", nationality.text, "text", start, start + len(nationality.text)))
        return found

    def _conjoined_nouns(self, noun) -> list:
        """Return the noun and the common nouns joined to it by conjunctions, in text order."""
        nouns = [noun]
        pending = [noun]
        while pending:
            current = pending.pop()
            for child in current.children:
                if child.dep != self._dep["conj"]:
                    continue
                # The tagger sometimes marks lower-case job nouns ("businesswoman") as PROPN.
                if child.pos == NOUN or (child.pos == PROPN and child.text[:1].islower()):
                    nouns.append(child)
                    pending.append(child)
        return sorted(nouns, key=lambda token: token.i)

    def _nationality(self, view: SentenceView, noun) -> Span | None:
        """Return the NORP entity among the noun's left modifiers, nearest the noun first."""
        for child in reversed(list(noun.lefts)):
            for entity in view.entities:
                if entity.label_ == "NORP" and entity.start <= child.i < entity.end:
                    return entity
        return None

    def _parenthetical_dates(self, view: SentenceView, facts: DocumentFacts) -> list[FoundAttribute]:
        """Read "(born DATE)", "(died DATE)" and "(DATE – DATE)" life spans."""
        if view.segment.is_table:
            return []
        segment = view.segment
        text = segment.text
        local_start = segment.doc[view.start].idx
        local_end = view.char_end - segment.offset
        found: list[FoundAttribute] = []
        for group in _PARENTHESIS.finditer(text, local_start, local_end):
            # Parts separated by ";" as in "(née Smith; born 1950)", without surrounding spaces.
            for part in _PARENTHESIS_PART.finditer(group.group(1)):
                part_start = group.start(1) + part.start()
                found += self._read_life_part(view, facts, part.group(0).rstrip(), part_start)
        return found

    def _read_life_part(self, view: SentenceView, facts: DocumentFacts, part: str, part_start: int) -> list[FoundAttribute]:
        segment = view.segment
        char_pos = part_start + segment.offset
        token = self._token_at(view, part_start)
        dated: list[tuple[str, re.Match, int]] = []
        lifespan = _LIFESPAN.match(part)
        if lifespan is not None:
            key = self._resolve_subject(view, facts, token, char_pos)
            # A bare range after an organisation or a work is a period of activity, not a life.
            if key is None or key not in facts.person_keys:
                return []
            dated = [("birth_date", lifespan, 1), ("death_date", lifespan, 2)]
        else:
            for attribute, pattern in (("birth_date", _BORN), ("death_date", _DIED)):
                match = pattern.match(part)
                if match is not None:
                    dated.append((attribute, match, 1))
            if not dated:
                return []
            key = self._resolve_subject(view, facts, token, char_pos)
            if key is None:
                return []

        found: list[FoundAttribute] = []
        for attribute, match, group in dated:
            parsed = parse_date(match.group(group))
            if parsed is None:
                continue
            start = char_pos + match.start(group)
            value = match.group(group)
            found.append(FoundAttribute(key, attribute, value, "date", start, start + len(value), date=parsed[0]))
        return found

    def _token_at(self, view: SentenceView, local_char: int) -> int:
        span = view.segment.doc.char_span(local_char, local_char + 1, alignment_mode="expand")
        if span is None or len(span) == 0:
            return view.start
        return span.start

    def _anchored(self, view: SentenceView, facts: DocumentFacts) -> list[FoundAttribute]:
        """Read dates and places attached to born/died/founded/located and similar verbs."""
        if view.segment.is_table:
            return []
        segment = view.segment
        found: list[FoundAttribute] = []
        for index in range(view.start, view.end):
            names = self._anchors.get(segment.lemmas[index])
            if names is None or segment.pos[index] not in (VERB, ADJ):
                continue
            if names[0] == "birth_date" and segment.doc[index].lower_ != "born":
                continue
            date_attribute, place_attribute = names
            key: str | None = None
            resolved = False
            for entity in view.entities:
                preposition = self._attachment(segment, entity.root.i, index)
                if preposition is False:
                    continue
                is_date = entity.label_ == "DATE" and date_attribute is not None
                is_place = entity.label_ in PLACE_LABELS and place_attribute is not None
                if is_date and (preposition is None or preposition in DATE_PREPOSITIONS):
                    parsed = parse_date(entity.text)
                    if parsed is None:
                        continue
                    attribute, value_type, date = date_attribute, "date", parsed[0]
                elif is_place and preposition in PLACE_PREPOSITIONS:
                    attribute, value_type, date = place_attribute, "place", None
                else:
                    continue
                if not resolved:
                    key = self._resolve_subject(view, facts, index, segment.doc[index].idx + segment.offset)
                    resolved = True
                if key is None:
                    break
                start = entity.start_char + segment.offset
                found.append(FoundAttribute(key, attribute, entity.text, value_type, start, start + len(entity.text), date=date))
        return found

    def _attachment(self, segment: ParsedSegment, root: int, anchor: int) -> str | None | bool:
        """Return how ``root`` attaches to ``anchor``.

        Returns None for a direct dependent ("born August 4, 1961"), the lower-cased
        preposition for the object of a preposition of the anchor ("born in Honolulu"),
        and False for anything else.
        """
        head = segment.heads[root]
        if head == anchor and root != anchor:
            return None
        if segment.pos[head] == ADP and segment.heads[head] == anchor and head != anchor:
            return segment.doc[head].lower_
        return False

    def _measurements(self, view: SentenceView, facts: DocumentFacts) -> list[FoundAttribute]:
        """Read numbers with units attached to a noun, a dimension adjective or a verb."""
        if view.segment.is_table:
            return []
        segment = view.segment
        found: list[FoundAttribute] = []
        for entity in view.entities:
            if entity.label_ not in NUMBER_LABELS:
                continue
            parsed = parse_number(entity.text, entity.label_)
            if parsed is None:
                continue
            number, unit = parsed
            target = self._measured_target(view, entity)
            if target is None:
                continue
            attribute, noun, unit_token = target
            if unit is None and unit_token is not None:
                unit = segment.doc[unit_token].text
            key = self._measurement_owner(view, facts, noun)
            if key is None:
                continue
            start = entity.start_char + segment.offset
            found.append(FoundAttribute(key, attribute, entity.text, "number", start, start + len(entity.text), number=number, unit=unit))
        return found

    def _measured_target(self, view: SentenceView, entity: Span) -> tuple[str, int, int | None] | None:
        """Return (attribute name, token the owner is looked up from, unit token or None)."""
        segment = view.segment
        doc = segment.doc
        dep = self._dep
        root = entity.root.i
        head = segment.heads[root]
        if head == root or not view.start <= head < view.end:
            return None
        unit_token: int | None = None

        # "31,722 km2", "1,642 m deep": the number counts a unit word outside the entity.
        if segment.deps[root] in (dep["nummod"], dep["compound"], dep["quantmod"]) and doc[head].lower_ in UNIT_WORDS:
            unit_token = head
            root, head = head, segment.heads[head]
            for child in doc[root].children:
                if child.pos == ADJ and child.lower_ in DIMENSION_ADJECTIVES:
                    return DIMENSION_ADJECTIVES[child.lower_], root, unit_token

        root_dep = segment.deps[root]
        # "a population of 12,345", "revenue of $5.2 billion"
        if root_dep == dep["pobj"] and segment.pos[head] == ADP and doc[head].lower_ == "of":
            noun = segment.heads[head]
            if noun != head and segment.pos[noun] in (NOUN, PROPN) and noun not in view.mention_at:
                return doc[noun].lemma_.lower(), noun, unit_token
            return None
        # "6,650 km long"
        if root_dep == dep["npadvmod"] and segment.pos[head] == ADJ:
            word = doc[head].lower_
            return DIMENSION_ADJECTIVES.get(word, word), head, unit_token
        # "The population was 12,345", "Its area is 31,722 km2"
        if root_dep in (dep["attr"], dep["acomp"]) and segment.lemmas[head] == self._be:
            subject = next((c.i for c in doc[head].children if c.dep in (dep["nsubj"], dep["nsubjpass"])), None)
            if subject is not None and segment.pos[subject] == NOUN and subject not in view.mention_at:
                return doc[subject].lemma_.lower(), subject, unit_token
            return None
        # "12,000 employees", "three children". A count follows its noun only in names
        # and rankings ("number one", "Apollo 11"), which are not measurements.
        if root_dep in (dep["nummod"], dep["compound"], dep["quantmod"]) and segment.pos[head] == NOUN and root < head:
            return doc[head].lemma_.lower(), head, unit_token
        # "grossed $100 million": only measured values, because a bare count needs its noun.
        if (
            root_dep == dep["dobj"]
            and entity.label_ != "CARDINAL"
            and segment.pos[head] == VERB
            and segment.lemmas[head] not in (self._be, self._have)
        ):
            return doc[head].lemma_.lower(), head, unit_token
        return None

    def _measurement_owner(self, view: SentenceView, facts: DocumentFacts, noun: int) -> str | None:
        """Return the key of the entity a measured noun belongs to.

        An owner named on the noun itself wins: "Ghana's population", "the population of
        Ghana", "its area". A noun that is the clause subject and has no owner ("The
        population was 12,345") belongs to the title entity. Other nouns follow the
        subject rules of ``_resolve_subject``.
        """
        segment = view.segment
        doc = segment.doc
        dep = self._dep
        token = doc[noun]
        if segment.pos[noun] in (NOUN, PROPN):
            for child in token.children:
                if child.dep == dep["poss"]:
                    if child.i in view.mention_at:
                        return view.mention_at[child.i].key
                    if child.lower_ in POSSESSIVE_PRONOUNS:
                        return facts.title_key
                if child.dep == dep["prep"] and child.lower_ == "of":
                    for grandchild in child.children:
                        if grandchild.dep == dep["pobj"] and grandchild.i in view.mention_at:
                            return view.mention_at[grandchild.i].key
            if token.dep in (dep["nsubj"], dep["nsubjpass"]) and token.pos == NOUN and facts.title_key:
                return facts.title_key
        return self._resolve_subject(view, facts, noun, token.idx + segment.offset)


__all__ = [
    "AttributeExtractor",
    "DocumentFacts",
    "FoundAttribute",
    "GraphMention",
    "ParsedSegment",
    "SentenceView",
    "parse_date",
    "parse_number",
]
