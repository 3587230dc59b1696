"""How well the gathered evidence supports a question: the basis of abstaining off-corpus.

A question the corpus cannot answer still retrieves something, because search always
returns its nearest chunks. What gives it away is that no single piece of evidence is
about the question. The best one shares few of the question's content words and none
of the names in it. Both measures read only the question and the evidence
texts, so they cost nothing in the budget.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from solver.evidence import Evidence

# English function words, question words and auxiliaries, which carry no topic.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each either few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself neither no nor not now of off on once only or other our ours ourselves out over own same she should
    so some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom whose why will with would you your
    yours yourself yourselves
    """.split()
)
# Episodes abstain below these coverages (see Support.is_off_corpus). Checked on the
# 30 bundled HotpotQA questions, where the lowest best-evidence coverage was 0.36 and
# every question found at least one of its names, against 0.2 and none for the
# off-corpus question of tests/test_hostile.py.
MIN_COVERAGE = 0.25
MIN_COVERAGE_WITHOUT_NAMES = 0.5
# Words shorter than this count only when they are numbers.
_MIN_LENGTH = 3
# Words are compared on their first characters, a crude stem: "portrayed" meets "portrays".
_STEM_LENGTH = 5
_WORD = re.compile(r"\w+", re.UNICODE)
# A capitalised word that does not start the question is taken as a name.
_NAME = re.compile(r"(?<!^)(?<![.?!]\s)\b[A-Z][\w'’-]*")


@dataclass(frozen=True)
class Support:
    """How well the best evidence covers a question."""

    term_coverage: float  # share of the question's content words in the best single evidence item
    names: int  # names that the question contains
    names_found: int  # of those, how many any evidence item mentions

    def is_off_corpus(
        self, *, min_coverage: float = MIN_COVERAGE, min_coverage_without_names: float = MIN_COVERAGE_WITHOUT_NAMES
    ) -> bool:
        """Return whether the evidence fails to speak about the question.

        Off-corpus means either too few content words in the best evidence item, or,
        when the question names things and none of them occurs in the evidence, still
        fewer than ``min_coverage_without_names`` of them.
        """
        if self.term_coverage < min_coverage:
            return True
        return self.names > 0 and self.names_found == 0 and self.term_coverage < min_coverage_without_names


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(character for character in decomposed if not unicodedata.combining(character))


def content_terms(text: str) -> set[str]:
    """Return the stems of the words of ``text`` that carry its topic."""
    terms = set()
    for word in _WORD.findall(_fold(text)):
        if word in STOPWORDS or (len(word) < _MIN_LENGTH and not word.isdigit()):
            continue
        terms.add(word[:_STEM_LENGTH])
    return terms


def question_support(question: str, evidence: Iterable[Evidence]) -> Support:
    """Measure how well ``evidence`` covers ``question``; see :class:`Support`."""
    terms = content_terms(question)
    names = {_fold(name) for name in _NAME.findall(question.strip()) if _fold(name) not in STOPWORDS}
    best = 0.0
    found: set[str] = set()
    for item in evidence:
        text = item.title + " " + item.text
        if terms:
            best = max(best, len(terms & content_terms(text)) / len(terms))
        folded = _fold(text)
        found |= {name for name in names if re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", folded)}
    if not terms:
        best = 1.0
    return Support(term_coverage=best, names=len(names), names_found=len(found))
