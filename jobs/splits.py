"""Deterministic train and heldout splits of a question file.

A question's split depends only on its id (its text when it has no id) and a seed: the
SHA-256 digest of ``"{seed}:{id}"`` read as an integer, even for ``train`` and odd for
``heldout``. About half of the questions land in each split, the same ones on every
machine and run, and adding or removing other questions never moves a question between
splits. Anything trained or tuned reads ``train``; reported figures read ``heldout``.
"""

from __future__ import annotations

import hashlib
from typing import Any

SPLITS = ("train", "heldout", "all")
DEFAULT_SEED = 0


def question_key(record: dict[str, Any]) -> str:
    identifier = record.get("id")
    return str(identifier) if identifier not in (None, "") else record["question"]


def split_of(record: dict[str, Any], *, seed: int = DEFAULT_SEED) -> str:
    """Return "train" or "heldout" for one question record."""
    digest = hashlib.sha256(f"{seed}:{question_key(record)}".encode()).digest()
    return "train" if int.from_bytes(digest[:8], "big") % 2 == 0 else "heldout"


def select_split(questions: list[dict[str, Any]], split: str, *, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """Keep the questions of ``split`` ("train", "heldout" or "all"), in file order."""
    if split not in SPLITS:
        message = f"unknown split {split!r}; use one of {list(SPLITS)}"
        raise ValueError(message)
    if split == "all":
        return list(questions)
    return [record for record in questions if split_of(record, seed=seed) == split]
