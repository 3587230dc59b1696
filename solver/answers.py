"""Answer normalisation and the standard exact-match and token-F1 scores.

The normalisation is the one used by SQuAD and HotpotQA evaluation: lower-case, drop
punctuation and the articles a, an and the, collapse whitespace.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str | None, golds: Iterable[str]) -> float:
    if prediction is None:
        return 0.0
    normalized = normalize_answer(prediction)
    return float(any(normalized == normalize_answer(gold) for gold in golds))


def token_f1(prediction: str | None, golds: Iterable[str]) -> float:
    """Best token-overlap F1 of the prediction against any gold answer."""
    if prediction is None:
        return 0.0
    best = 0.0
    predicted = normalize_answer(prediction).split()
    for gold in golds:
        expected = normalize_answer(gold).split()
        # Yes/no/noanswer answers only count as exact matches, as in HotpotQA's scorer.
        if (predicted and predicted[0] in {"yes", "no"}) or (expected and expected[0] in {"yes", "no"}):
            if predicted != expected:
                continue
        common = Counter(predicted) & Counter(expected)
        overlap = sum(common.values())
        if overlap == 0:
            continue
        precision = overlap / len(predicted)
        recall = overlap / len(expected)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best
