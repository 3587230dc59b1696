"""The episode loop: the policy picks an action, the solver prices and runs it, and logs it.

Budget rule: before an action runs, the solver works out the most it may cost and shrinks
it to fit the remaining budget (fewer chunks returned, less evidence read). After it runs,
the charge is the measured cost, capped at that reservation. So the spent total never
passes the budget, whatever the policy asks for. When nothing affordable is left, the
episode stops with its best answer so far.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Protocol

from indexer.embedding import count_tokens
from solver.evidence import Candidate, Evidence
from solver.probes import episode_random, pick_probe, run_probe
from solver.state import (
    EMBEDDED_TIER,
    REASON,
    RETRIEVAL_OVERHEAD_TOKENS,
    RETRIEVE,
    STOP,
    Action,
    EpisodeState,
    ProbeRecord,
    StepRecord,
    Tier,
)
from solver.support import question_support

logger = logging.getLogger("ponder.episode")

MAX_STEPS = 24
# Output tokens reserved per reasoning operation: an answer is short, a bridge writes
# follow-up queries, a decomposition writes sub-questions.
OUTPUT_TOKENS = {"decompose": 64, "bridge": 64, "compute": 48}
ANSWER_TOKENS = 24
# Table-row tokens a compute step may read when it has to find its operand rows itself.
COMPUTE_LOOKUP_TOKENS = 128
# Seconds a model tier is skipped after it timed out or refused connections.
TIER_COOLDOWN_S = 60.0
# A vote reads the evidence in this many disjoint subsets, each with its own copy of the
# question and its own short answer.
VOTE_SUBSETS = 3


class Policy(Protocol):
    name: str

    def start(self, state: EpisodeState) -> None: ...

    def choose(self, state: EpisodeState) -> Action: ...


class Monitor(Protocol):
    def __call__(self, state: EpisodeState) -> dict[str, float]: ...


@dataclass
class Citation:
    evidence_id: str
    doc_id: str
    title: str
    sentence: str

    def to_dict(self) -> dict[str, str]:
        return {"evidence_id": self.evidence_id, "doc_id": self.doc_id, "title": self.title, "sentence": self.sentence}


@dataclass
class EpisodeResult:
    """The answer of an episode, with everything needed to audit it."""

    episode_id: str
    question: str
    answer: str | None
    confidence: float
    abstained: bool
    citations: list[Citation]
    steps: list[StepRecord]
    cost: float
    budget: float
    latency_ms: float
    policy: str
    index_version: int
    groups: tuple[str, ...]
    answer_type: str = ""
    derivation: str = ""
    evidence: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "question": self.question,
            "answer": self.answer,
            "confidence": round(self.confidence, 4),
            "abstained": self.abstained,
            "answer_type": self.answer_type,
            "derivation": self.derivation,
            "citations": [citation.to_dict() for citation in self.citations],
            "cost": round(self.cost, 2),
            "budget": self.budget,
            "latency_ms": round(self.latency_ms, 2),
            "policy": self.policy,
            "index_version": self.index_version,
            "groups": list(self.groups),
            "steps": [step_to_dict(step) for step in self.steps],
        }


def step_to_dict(step: StepRecord) -> dict[str, Any]:
    return {
        "index": step.index,
        "action": step.action.label,
        "arguments": step.action.arguments(),
        "cost": round(step.cost, 2),
        "latency_ms": round(step.latency_ms, 2),
        "new_evidence": step.new_evidence,
        "new_supporting": step.new_supporting,
        "confidence_before": round(step.confidence_before, 4),
        "confidence_after": round(step.confidence_after, 4),
        "top_answer": step.top_answer,
        "note": step.note,
        "tier_used": step.tier_used,
        "tokens_in": step.tokens_in,
        "tokens_out": step.tokens_out,
        "error": step.error,
        "evidence_ids": list(step.evidence_ids),
        "features": {key: round(value, 4) for key, value in step.features.items()},
        "probe": probe_to_dict(step.probe) if step.probe is not None else None,
    }


def probe_to_dict(probe: ProbeRecord) -> dict[str, Any]:
    return {
        "action": probe.action.label,
        "arguments": probe.action.arguments(),
        "cost": round(probe.cost, 2),
        "new_evidence": probe.new_evidence,
        "confidence_before": round(probe.confidence_before, 4),
        "confidence_after": round(probe.confidence_after, 4),
        "answer": probe.answer,
        "answer_changed": probe.answer_changed,
        "note": probe.note,
    }


class Solver:
    """Run budgeted episodes over one index snapshot with a toolbox and a reasoner."""

    def __init__(
        self,
        toolbox,
        reasoner,
        monitor: Monitor,
        *,
        tiers: dict[str, Tier] | None = None,
        models: dict | None = None,
        router=None,
    ) -> None:
        self.toolbox = toolbox
        self.reasoner = reasoner
        self.monitor = monitor
        self.tiers = tiers or {EMBEDDED_TIER.name: EMBEDDED_TIER}
        # Tier name to a reasoner on a chat endpoint (solver.model_reasoner.ModelReasoner).
        self.models = models or {}
        # Called as router(action, state) on every chosen action to assign a model tier.
        self.router = router
        self._tier_down_until: dict[str, float] = {}  # tier name to time.monotonic() when it is tried again

    def solve(
        self,
        question: str,
        policy: Policy,
        *,
        budget: float = 2_000,
        groups: tuple[str, ...] = ("public",),
        on_step=None,
        probe_rate: float = 0.0,
        probe_seed: int = 0,
    ) -> EpisodeResult:
        """Answer ``question`` within ``budget`` tokens; ``on_step`` sees each step as it ends.

        With ``probe_rate`` above 0, that share of steps also runs one action the policy
        did not choose on a copy of the state (see solver/probes.py), free of charge.
        """
        if not 0.0 <= probe_rate <= 1.0:
            message = f"probe rate must be between 0 and 1, got {probe_rate}"
            raise ValueError(message)
        started = time.perf_counter()
        probe_random = episode_random(probe_seed, question) if probe_rate > 0 else None
        state = EpisodeState(question=question, budget=float(budget), groups=tuple(sorted(groups)))
        self.toolbox.prepare(state)
        answer_type = self.reasoner.answer_type(question)
        state.answer_type = answer_type.kind
        state.info["answer"] = answer_type
        # Question analysis is free: it reads only the question, as the controller does.
        hops = self.reasoner.decompose(question)
        state.info["needs_bridge"] = len(hops) >= 2 and any("#1" in hop for hop in hops[1:])
        self.monitor(state)  # fills the question's static features that routing reads
        policy.start(state)
        for index in range(MAX_STEPS):
            features = self.monitor(state)
            # The copy is taken before the policy chooses, because choosing may change the
            # state (a policy pops the follow-up query it is about to run).
            probing = probe_random is not None and probe_random.random() < probe_rate
            copy = deepcopy(state) if probing else None
            action = policy.choose(state)
            if self.router is not None:
                action = self.router(action, state)
            if action.kind == STOP:
                break
            probe = self._probe(copy, action, features, index, probe_random) if copy is not None else None
            step = self._run(state, action, features, index)
            step.probe = probe
            state.steps.append(step)
            if on_step is not None:
                on_step(step)
            if step.cost == 0 and step.new_evidence == 0 and "skipped" in step.note:
                # The policy asked for something that cannot run; stop rather than loop.
                break
        result = self._finish(state, policy, action if "action" in locals() else None, started)
        return result

    # -- running one action ------------------------------------------------------------

    def _probe(self, copy: EpisodeState, chosen: Action, features: dict[str, float], index: int, rng) -> ProbeRecord | None:
        probe_action = pick_probe(copy, chosen, rng)
        if probe_action is None:
            return None
        return run_probe(self, copy, probe_action, features, index)

    def _run(self, state: EpisodeState, action: Action, features: dict[str, float], index: int) -> StepRecord:
        before = state.confidence
        started = time.perf_counter()
        evidence_ids: list[str] = []
        if action.kind == RETRIEVE:
            cost, new, supporting, note = self._retrieve(state, action, evidence_ids)
        elif action.kind == REASON:
            cost, new, supporting, note = self._reason(state, action, evidence_ids)
        else:  # pragma: no cover - Action validates kinds
            raise ValueError(action.kind)
        state.spent += cost
        top = state.top
        call = state.info.pop("model_call", {})
        return StepRecord(
            index=index,
            action=action,
            cost=cost,
            latency_ms=(time.perf_counter() - started) * 1000,
            features=features,
            new_evidence=new,
            new_supporting=supporting,
            confidence_before=before,
            confidence_after=state.confidence,
            top_answer=top.text if top else "",
            note=note,
            tier_used=call.get("tier", ""),
            tokens_in=call.get("tokens_in", 0),
            tokens_out=call.get("tokens_out", 0),
            error=call.get("error", ""),
            evidence_ids=list(dict.fromkeys(evidence_ids)),
        )

    def _retrieve(self, state: EpisodeState, action: Action, evidence_ids: list[str]) -> tuple[float, int, int, str]:
        """Run a retrieval; adds the ids of the evidence it returned to ``evidence_ids``."""
        query = action.query or state.question
        state.done_queries.add((action.name, query))
        if query != state.question:
            state.info["hop_query"] = query
        if state.remaining < RETRIEVAL_OVERHEAD_TOKENS + 1:
            return 0.0, 0, 0, "skipped: budget too small for a retrieval"
        mode = dict(action.args).get("mode", "hybrid")
        found, candidates = self.toolbox.retrieve(action.name, query, state, limit=action.limit, mode=mode)
        retrieval = state.count_retrievals()
        fresh = []
        for rank, item in enumerate(found):
            known = state.evidence.get(item.evidence_id)
            if known is not None:
                # Found again: it now ranks with this retrieval's results, at no new cost.
                evidence_ids.append(known.evidence_id)
                known.details["retrieval"] = retrieval
                known.details["rank"] = rank
                known.hop = max(known.hop, item.hop)
                continue
            item.details["retrieval"] = retrieval
            item.details["rank"] = rank
            fresh.append(item)
        allowance = state.remaining - RETRIEVAL_OVERHEAD_TOKENS
        kept: list[Evidence] = []
        used = 0
        for item in fresh:
            if used + item.n_tokens > allowance:
                continue
            kept.append(item)
            used += item.n_tokens
        note = f"{len(kept)} of {len(fresh)} new results kept" if len(kept) < len(fresh) else f"{len(kept)} new results"
        for item in kept:
            evidence_ids.append(item.evidence_id)
            item.details["order"] = len(state.evidence)
            state.evidence[item.evidence_id] = item
        if candidates:
            self._merge_candidates(state, candidates)
        supporting = self._count_supporting(state, kept)
        return float(RETRIEVAL_OVERHEAD_TOKENS + used), len(kept), supporting, note

    def _reason(self, state: EpisodeState, action: Action, evidence_ids: list[str]) -> tuple[float, int, int, str]:
        """Run a reasoning step; adds the ids of the evidence it read to ``evidence_ids``."""
        tier = self.tiers.get(action.tier)
        if tier is None:
            message = f"unknown model tier {action.tier!r}; configured tiers: {sorted(self.tiers)}"
            raise ValueError(message)
        model = self.models.get(action.tier)
        if model is None or action.name not in model.operations:
            return self._reason_embedded(state, action, tier, evidence_ids)
        from solver.model_reasoner import ModelStepError

        down_until = self._tier_down_until.get(action.tier, 0.0)
        if time.monotonic() < down_until:
            failed = ModelStepError(
                f"{action.tier} tier skipped: it was unreachable, retrying in {down_until - time.monotonic():.0f} s"
            )
        else:
            try:
                outcome = model.run(self, state, action, tier)
                evidence_ids.extend(state.info.get("model_call", {}).get("evidence_ids", []))
                return outcome
            except ModelStepError as error:
                logger.warning("%s on the %s tier failed, falling back to the embedded tier: %s", action.name, action.tier, error)
                failed = error
            if failed.unreachable:
                # A server that timed out or refused the connection after its retries is
                # skipped for a while, so later steps do not each wait out the timeouts.
                self._tier_down_until[action.tier] = time.monotonic() + TIER_COOLDOWN_S
                logger.warning("skipping the %s tier for %.0f s", action.tier, TIER_COOLDOWN_S)
        state.info.pop("model_call", None)
        # A failed call whose reply reported usage is charged, and the fallback fits in what is left.
        state.spent += failed.cost
        try:
            cost, new, supporting, note = self._reason_embedded(state, action, EMBEDDED_TIER, evidence_ids)
        finally:
            state.spent -= failed.cost
        call = state.info.setdefault("model_call", {})
        call["error"] = str(failed)
        charged = f" ({failed.cost:.0f} charged for the failed call)" if failed.cost else ""
        return cost + failed.cost, new, supporting, f"{action.tier} tier failed{charged}, embedded fallback: {note}"

    def _reason_embedded(
        self, state: EpisodeState, action: Action, tier: Tier, evidence_ids: list[str]
    ) -> tuple[float, int, int, str]:
        question_tokens = state.info.get("question_tokens") or count_tokens([state.question])[0]
        state.info["question_tokens"] = question_tokens
        # Reserve: the question, the output, and as much evidence as the rest allows.
        copies = VOTE_SUBSETS if action.name == "vote" else 1
        output_tokens = OUTPUT_TOKENS.get(action.name, ANSWER_TOKENS) * copies
        reserve_out = output_tokens * tier.price_out
        allowance_in = (state.remaining - reserve_out) / tier.price_in - question_tokens * copies
        if allowance_in < 0:
            return 0.0, 0, 0, "skipped: budget too small for this reasoning step"
        evidence = []
        used = 0
        for item in state.ranked_evidence():
            if used + item.n_tokens > allowance_in:
                continue
            evidence.append(item)
            used += item.n_tokens
        if action.name == "compute" and not any(item.kind == "table" for item in state.evidence.values()):
            # With no table rows gathered, compute looks rows up itself, so it reserves
            # room for that lookup as a table retrieval would.
            used += int(max(0.0, min(RETRIEVAL_OVERHEAD_TOKENS + COMPUTE_LOOKUP_TOKENS, allowance_in - used)))
        reservation = tier.cost(question_tokens * copies + used, output_tokens)
        operation = action.name
        if operation in {"bridge", "synthesize", "compare", "vote"} or (operation == "verify" and state.top is not None):
            evidence_ids.extend(item.evidence_id for item in evidence)
        note = ""
        supporting = 0
        if operation == "decompose":
            from solver.reasoner import ReasonResult

            queries = self.reasoner.decompose(state.question)
            result = ReasonResult(queries, question_tokens, sum(count_tokens(queries)) if queries else 0)
            hops = [hop for hop in queries if hop and "#1" not in hop and ("chunks", hop) not in state.done_queries]
            state.open_hops.extend(hop for hop in hops if hop not in state.open_hops)
            note = f"{len(hops)} sub-questions"
        elif operation == "bridge":
            result = self.reasoner.bridge(state.question, evidence)
            for bridge in result.output:
                if bridge.name not in state.bridges:
                    state.bridges.append(bridge.name)
                    if bridge.follow_up_query and bridge.follow_up_query not in state.open_hops:
                        state.open_hops.append(bridge.follow_up_query)
            note = "bridges: " + ", ".join(bridge.name for bridge in result.output[:3])
            supporting = len(result.output)
        elif operation == "synthesize":
            hop_query = state.info.get("hop_query")
            if hop_query:
                # After a hop, read the evidence against the follow-up query, keeping the
                # original answer type and not repeating the original question's words.
                result = self.reasoner.candidates(
                    hop_query, evidence, answer_type=state.info.get("answer"), exclude=(state.question,)
                )
                # Answers from earlier follow-up queries stay in the running; answers read
                # against the question itself were about the bridge entity and drop out.
                pool = state.info.setdefault("hop_candidates", [])
                pool.extend(result.output)
                state.candidates = []
                self._merge_candidates(state, list(pool))
            else:
                result = self.reasoner.candidates(state.question, evidence)
                self._merge_candidates(state, result.output, replace=True)
            note = f"{len(result.output)} candidates" + (f" for {hop_query!r}" if hop_query else "")
        elif operation == "compare":
            result = self.reasoner.compare(state.question, evidence)
            self._merge_candidates(state, result.output)
            note = f"{len(result.output)} candidates"
        elif operation == "verify":
            top = state.top
            if top is None:
                return 0.0, 0, 0, "skipped: no candidate to verify"
            result = self.reasoner.verify(state.question, top, evidence)
            support = float(result.output)
            state.verified[top.text] = support
            # A well-supported answer gains confidence, a poorly supported one loses it.
            top.confidence = min(1.0, max(0.0, 0.5 * top.confidence + 0.5 * support))
            state.candidates.sort(key=lambda candidate: -candidate.confidence)
            note = f"support {support:.2f}"
        elif operation == "vote":
            if state.top is None or len(evidence) < 2:
                return 0.0, 0, 0, "skipped: a vote needs a candidate and at least two pieces of evidence"
            result = self._vote(state, evidence)
            note = "votes: " + ", ".join(f"{answer} {count}" for answer, count in result.output.most_common(3))
        elif operation == "compute":
            result = self.toolbox.compute(state.question, state)
            evidence_ids.extend(item.evidence_id for item in state.evidence.values() if item.kind == "table")
            evidence_ids.extend(evidence_id for candidate in result.output for evidence_id in candidate.support)
            self._merge_candidates(state, result.output)
            note = result.output[0].derivation if result.output else "nothing to compute"
        else:  # pragma: no cover - Action validates names
            raise ValueError(operation)
        cost = tier.cost(result.tokens_in, result.tokens_out)
        if cost > reservation:
            logger.info("reasoner reported %.0f tokens of cost for %s, over the %.0f reserved; charging the reservation", cost, operation, reservation)
            note += f"; charged the reservation {reservation:.0f} (reported {cost:.0f})"
            cost = reservation
        state.info["model_call"] = {"tier": tier.name, "tokens_in": result.tokens_in, "tokens_out": result.tokens_out}
        return float(min(cost, state.remaining)), 0, supporting, note

    def _vote(self, state: EpisodeState, evidence: list[Evidence]):
        """Read disjoint evidence subsets separately and reweigh the candidates by agreement.

        Each subset is read on its own, the way synthesize reads all of it, and its top
        answer is one vote. A candidate's new confidence is the mean of its old one and
        its share of the votes, so answers that independent evidence agrees on rise and
        answers that rest on one passage fall. The result's output is the vote count.
        """
        from solver.answers import normalize_answer
        from solver.reasoner import ReasonResult

        subsets = [evidence[start::VOTE_SUBSETS] for start in range(VOTE_SUBSETS)]
        subsets = [subset for subset in subsets if subset]
        hop_query = state.info.get("hop_query")
        votes: Counter[str] = Counter()
        tokens_in = tokens_out = 0
        for subset in subsets:
            if hop_query:
                read = self.reasoner.candidates(hop_query, subset, answer_type=state.info.get("answer"), exclude=(state.question,))
            else:
                read = self.reasoner.candidates(state.question, subset)
            tokens_in += read.tokens_in
            tokens_out += read.tokens_out
            if read.output:
                votes[normalize_answer(read.output[0].text)] += 1
        for candidate in state.candidates:
            share = votes.get(normalize_answer(candidate.text), 0) / len(subsets)
            candidate.confidence = min(1.0, max(0.0, 0.5 * candidate.confidence + 0.5 * share))
        state.candidates.sort(key=lambda candidate: (-candidate.confidence, candidate.text))
        return ReasonResult(votes, tokens_in, tokens_out)

    def _merge_candidates(self, state: EpisodeState, new: list[Candidate], *, replace: bool = False) -> None:
        from solver.answers import normalize_answer

        pool: dict[str, Candidate] = {}
        keep_old = [candidate for candidate in state.candidates if not replace or candidate.derivation]
        for candidate in [*keep_old, *new]:
            key = normalize_answer(candidate.text)
            if not key:
                continue
            existing = pool.get(key)
            if existing is None or candidate.confidence > existing.confidence:
                pool[key] = candidate
        state.candidates = sorted(pool.values(), key=lambda candidate: (-candidate.confidence, candidate.text))

    def _count_supporting(self, state: EpisodeState, items: list[Evidence]) -> int:
        """New evidence that names the top candidate or a bridge entity."""
        names = [name.lower() for name in ([state.top.text] if state.top else []) + state.bridges if name]
        return sum(1 for item in items if any(name in item.text.lower() for name in names))

    # -- finishing --------------------------------------------------------------------

    def _finish(self, state: EpisodeState, policy: Policy, last: Action | None, started: float) -> EpisodeResult:
        abstain_requested = last is not None and last.kind == STOP and last.name == "abstain"
        top = state.top
        # However confident the reasoner is, an answer drawn from evidence that does not
        # speak about the question is a guess: an off-corpus question abstains.
        read = list(state.evidence.values())
        if top is not None and top.derivation:
            # A computed answer may come from table rows the compute step found itself,
            # and its derivation quotes their row labels and column headers.
            read.append(Evidence(f"derivation:{len(read)}", "table", "", "", top.derivation, 0.0, 0))
        support = question_support(state.question, read)
        state.info["support"] = support
        abstained = abstain_requested or top is None or support.is_off_corpus()
        citations: list[Citation] = []
        if top is not None and not abstained:
            for evidence_id in top.support[:3]:
                item = state.evidence.get(evidence_id)
                if item is not None:
                    sentence = top.sentence if top.sentence and top.sentence in item.text else item.text[:300]
                    citations.append(Citation(evidence_id, item.doc_id, item.title, sentence))
        return EpisodeResult(
            episode_id=uuid.uuid4().hex,
            question=state.question,
            answer=None if abstained else top.text,
            confidence=state.confidence,
            abstained=abstained,
            citations=citations,
            steps=state.steps,
            cost=state.spent,
            budget=state.budget,
            latency_ms=(time.perf_counter() - started) * 1000,
            policy=policy.name,
            index_version=self.toolbox.version,
            groups=state.groups,
            answer_type=state.answer_type,
            derivation=top.derivation if top else "",
            evidence=state.ranked_evidence(),
        )
