"""Measure the embedded reasoner on HotpotQA in the distractor setting.

Each question is answered from its own 10 paragraphs (2 supporting, 8 distractors),
scored against the question by embedding similarity, with a simple two-hop procedure.
Comparisons go to ``compare``. Other questions take the best candidate unless the
question has a bridge phrase. Then ``bridge`` names the linking entity, the paragraphs
are rescored against the follow-up query, and candidates are extracted again.
``--oracle`` keeps only the two supporting paragraphs,
an upper bound for retrieval.

Develop on questions 0-199 and report held-out figures on 200-499:

    .venv/bin/python bench/reader_dev.py --start 0 --end 200
    .venv/bin/python bench/reader_dev.py --start 200 --end 500
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import string
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.embedding import Embedder, count_tokens  # noqa: E402
from solver.evidence import Candidate, Evidence  # noqa: E402
from solver.reasoner import EmbeddedReasoner  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hotpotqa-dev.jsonl"


def normalize(text: str) -> str:
    """SQuAD answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, gold: str) -> float:
    predicted, expected = normalize(prediction).split(), normalize(gold).split()
    common = collections.Counter(predicted) & collections.Counter(expected)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


class TimedReasoner:
    """Forward calls to a reasoner and add up the seconds spent inside them."""

    def __init__(self, reasoner: EmbeddedReasoner) -> None:
        self.reasoner = reasoner
        self.seconds = 0.0

    def __getattr__(self, name: str):
        method = getattr(self.reasoner, name)
        if not callable(method):
            return method

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


class DistractorReader:
    """Build evidence for one HotpotQA question and run the two-hop procedure."""

    def __init__(self, reasoner: EmbeddedReasoner, embedder: Embedder) -> None:
        self.reasoner = TimedReasoner(reasoner)
        self.embedder = embedder
        self._paragraph_vectors: dict[str, np.ndarray] = {}

    def evidence_for(self, record: dict, *, oracle: bool) -> list[Evidence]:
        paragraphs = [p for p in record["paragraphs"] if p["is_supporting"] or not oracle]
        missing = [p for p in paragraphs if p["pid"] not in self._paragraph_vectors]
        if missing:
            vectors = self.embedder.embed([f"{p['title']}. {p['text']}" for p in missing])
            for paragraph, vector in zip(missing, vectors, strict=True):
                self._paragraph_vectors[paragraph["pid"]] = vector
        tokens = count_tokens([p["text"] for p in paragraphs])
        evidence = [
            Evidence(
                evidence_id=p["pid"],
                kind="chunk",
                doc_id=p["pid"],
                title=p["title"],
                text=p["text"],
                score=0.0,
                n_tokens=n,
                source="distractor",
            )
            for p, n in zip(paragraphs, tokens, strict=True)
        ]
        return self.rescore(record["question"], evidence)

    def rescore(self, query: str, evidence: list[Evidence], *, keep: float = 0.0) -> list[Evidence]:
        """Set each evidence score to its similarity to ``query``, plus ``keep`` times the old score."""
        query_vector = self.embedder.embed([query])[0]
        rescored = []
        for item in evidence:
            similarity = float(self._paragraph_vectors[item.evidence_id] @ query_vector)
            rescored.append(
                Evidence(**{**item.__dict__, "score": similarity + keep * item.score, "hop": 1 if keep else 0})
            )
        return rescored

    def answer(self, question: str, evidence: list[Evidence]) -> tuple[Candidate | None, dict]:
        """Return the best candidate and a trace of the steps taken."""
        reasoner = self.reasoner
        answer_type = reasoner.answer_type(question)
        trace: dict = {"kind": answer_type.kind, "tokens_in": 0, "tokens_out": 0}
        if answer_type.is_comparison:
            result = reasoner.compare(question, evidence)
            self._charge(trace, result)
            trace["derivation"] = result.output[0].derivation if result.output else ""
            return (result.output[0] if result.output else None), trace

        if len(reasoner.decompose(question)) < 2:
            first = reasoner.candidates(question, evidence, answer_type=answer_type)
            self._charge(trace, first)
            return (first.output[0] if first.output else None), trace

        bridge = reasoner.bridge(question, evidence)
        self._charge(trace, bridge)
        if not bridge.output:
            fallback = reasoner.candidates(question, evidence, answer_type=answer_type)
            self._charge(trace, fallback)
            return (fallback.output[0] if fallback.output else None), trace
        entity = bridge.output[0]
        trace["bridge"] = entity.name
        trace["follow_up"] = entity.follow_up_query
        second_evidence = self.rescore(entity.follow_up_query, evidence, keep=0.5)
        second = reasoner.candidates(
            entity.follow_up_query, second_evidence, answer_type=answer_type, exclude=(question,)
        )
        self._charge(trace, second)
        return (second.output[0] if second.output else None), trace

    @staticmethod
    def _charge(trace: dict, result) -> None:
        trace["tokens_in"] += result.tokens_in
        trace["tokens_out"] += result.tokens_out


def final_occurrences(reader: DistractorReader, record: dict) -> list:
    """Return the span occurrences the last hop of ``answer`` ranks, with all features."""
    reasoner = reader.reasoner
    question = record["question"]
    answer_type = reasoner.answer_type(question)
    evidence = reader.evidence_for(record, oracle=False)
    query, exclude = question, ()
    if len(reasoner.decompose(question)) >= 2:
        bridge = reasoner.bridge(question, evidence)
        if bridge.output:
            query, exclude = bridge.output[0].follow_up_query, (question,)
            evidence = reader.rescore(query, evidence, keep=0.5)
    return reasoner.scorer.score_spans(query, evidence, answer_type, echo_texts=exclude, focus_top=None)


def fit_weights(records: list[dict], reader: DistractorReader, *, steps: int = 3000, l2: float = 0.01) -> dict[str, float]:
    """Fit WEIGHTS by maximising the softmax probability of gold spans per question.

    Each question contributes log(sum of p over occurrences whose text has token F1 of
    at least 0.6 with a gold answer), where p is the softmax of the linear scores over
    all its occurrences. Questions whose gold answer is among no occurrence are skipped.
    """
    from solver.candidates import WEIGHTS, normalize_answer

    names = list(WEIGHTS)
    groups = []
    for record in records:
        if reader.reasoner.answer_type(record["question"]).is_comparison:
            continue
        occurrences = final_occurrences(reader, record)
        passages: dict[str, set[str]] = collections.defaultdict(set)
        for occurrence in occurrences:
            passages[normalize_answer(occurrence.text)].add(occurrence.sentence.evidence.evidence_id)
        for occurrence in occurrences:
            occurrence.features.agreement = float(np.log(len(passages[normalize_answer(occurrence.text)])))
        gold = np.array([max(f1_score(o.text, g) for g in record["answers"]) >= 0.6 for o in occurrences])
        if len(occurrences) < 2 or not gold.any():
            continue
        matrix = np.array([[getattr(o.features, name) for name in names] for o in occurrences])
        groups.append((matrix, gold))
    weights = np.array([WEIGHTS[name] for name in names])
    rate = 0.05
    for _ in range(steps):
        gradient = -l2 * weights
        for matrix, gold in groups:
            scores = matrix @ weights
            p = np.exp(scores - scores.max())
            p /= p.sum()
            q = p * gold
            q /= q.sum()
            gradient += (q - p) @ matrix / len(groups)
        weights += rate * gradient
    return {name: round(float(w), 3) for name, w in zip(names, weights, strict=True)}


def run(records: list[dict], reader: DistractorReader, *, oracle: bool, show: int) -> dict:
    exact, f1_total, reasoner_seconds, total_seconds = 0.0, 0.0, 0.0, 0.0
    by_kind: dict[str, list[float]] = collections.defaultdict(list)
    shown = 0
    for record in records:
        started = time.perf_counter()
        before = reader.reasoner.seconds
        evidence = reader.evidence_for(record, oracle=oracle)
        candidate, trace = reader.answer(record["question"], evidence)
        reasoner_seconds += reader.reasoner.seconds - before
        total_seconds += time.perf_counter() - started

        prediction = candidate.text if candidate else ""
        em = max(float(normalize(prediction) == normalize(gold)) for gold in record["answers"])
        f1 = max(f1_score(prediction, gold) for gold in record["answers"])
        exact += em
        f1_total += f1
        by_kind[trace["kind"]].append(f1)
        if f1 < 0.5 and shown < show:
            shown += 1
            print(f"Q: {record['question']}\n   gold={record['answers'][0]!r} predicted={prediction!r} {trace}")
    count = max(len(records), 1)
    return {
        "questions": len(records),
        "em": 100 * exact / count,
        "f1": 100 * f1_total / count,
        "reasoner_ms_per_question": 1000 * reasoner_seconds / count,
        "total_ms_per_question": 1000 * total_seconds / count,
        "f1_by_kind": {kind: [len(values), round(100 * sum(values) / len(values), 1)] for kind, values in sorted(by_kind.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="HotpotQA JSON-lines file")
    parser.add_argument("--start", type=int, default=0, help="first question index (inclusive)")
    parser.add_argument("--end", type=int, default=200, help="last question index (exclusive)")
    parser.add_argument("--oracle", action="store_true", help="also run with only the supporting paragraphs")
    parser.add_argument("--show", type=int, default=0, help="print this many questions answered with F1 below 0.5")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--fit", action="store_true", help="fit the span-score weights on the range and print them")
    args = parser.parse_args()

    with args.data.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle][args.start : args.end]
    embedder = Embedder()
    reader = DistractorReader(EmbeddedReasoner(embedder), embedder)
    # Load spaCy and the ONNX session before timing.
    reader.answer("Who is older, Ann Smith or Bob Jones?", reader.evidence_for(records[0], oracle=False))

    if args.fit:
        print(json.dumps(fit_weights(records, reader), indent=2))
        return
    figures = {"range": [args.start, args.end], "distractor": run(records, reader, oracle=False, show=args.show)}
    if args.oracle:
        figures["oracle"] = run(records, reader, oracle=True, show=0)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
