"""Entity name normalisation: one key for names that differ only in form."""

from __future__ import annotations

import re
import unicodedata

from indexer.records import stable_hash

# Zero-width and other format characters that survive NFKC and make equal names differ.
_INVISIBLE = dict.fromkeys(
    cp for cp in (0x00AD, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF, 0x180E)
)
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
_LEADING_ARTICLE = re.compile(r"^(the|a|an) ")
_POSSESSIVE = re.compile(r"['\u2019]s\b")
# Dots and apostrophes join rather than split, so "U.S.A." matches "USA" and "O'Neil" "ONeil".
_JOINING = re.compile(r"[.'\u2019]")


def entity_key(name: str) -> str:
    """Normalise an entity name for matching.

    Applies NFKC, drops invisible characters and combining accents, folds case, removes
    possessive endings, punctuation and a leading article, and collapses whitespace:
    "The Beatles", "beatles" and "Beatles’s" all give "beatles". Names in scripts without
    case or accents (CJK, emoji) keep their characters.
    """
    text = unicodedata.normalize("NFKC", name).translate(_INVISIBLE)
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    text = text.casefold()
    text = _POSSESSIVE.sub("", text)
    text = _JOINING.sub("", text)
    text = _NON_WORD.sub(" ", text).strip()
    text = _LEADING_ARTICLE.sub("", text)
    if not text:
        # Names made only of symbols (emoji) keep their NFKC form so they stay distinct.
        text = unicodedata.normalize("NFKC", name).translate(_INVISIBLE).strip()
    return text


def entity_id(key: str) -> str:
    """Stable id of the entity whose normalised key is ``key``."""
    return "e" + stable_hash(key, length=15)
