"""Retrieval quality on LoCoMo (../shared/bench/locomo-dev.json), through the real save and
search paths: every dialog turn saved as one memory (one project per conversation), every
question searched in its own project; recall@5/@10 of the evidence turns per category.

    python tools/bench_locomo.py [--embedder minilm|none] [--ablate] [--data PATH] [--json OUT]

Not part of the test suite. Reads the data from ../shared/bench; never copies it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventlog import EventLog  # noqa: E402
from projector import Index  # noqa: E402
from projector.hybrid import SearchTuning  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "bench" / "locomo-dev.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
_TURN = re.compile(r"D:?(\d+):0*(\d+)")


def normalize_evidence(raw: list[str], turns: set[str]) -> tuple[list[str], int, int]:
    """Evidence ids as 'D<s>:<n>'; returns (ids, how many were rewritten, how many dropped)."""
    ids, rewritten, dropped = [], 0, 0
    for item in raw:
        parts = [p for p in re.split(r"[;,\s]+", item) if p]
        for part in parts:
            m = _TURN.fullmatch(part)
            if not m:
                dropped += 1
                continue
            dia = f"D{int(m.group(1))}:{int(m.group(2))}"
            if dia != part or len(parts) > 1:
                rewritten += 1
            if dia in turns:
                ids.append(dia)
            else:
                dropped += 1
    return list(dict.fromkeys(ids)), rewritten, dropped


def sessions(conversation: dict) -> list[tuple[int, str, list[dict]]]:
    """(number, date text, turns) of each session, in order."""
    out = []
    for key, turns in conversation.items():
        m = re.fullmatch(r"session_(\d+)", key)
        if m and isinstance(turns, list):
            out.append((int(m.group(1)), conversation.get(f"{key}_date_time", ""), turns))
    return sorted(out)


def turn_text(date: str, turn: dict) -> str:
    """A turn as one memory: '[date] Speaker: text' (with the shared photo's caption)."""
    text = f"[{date}] {turn['speaker']}: {turn['text']}"
    if turn.get("blip_caption"):
        text += f" [shares a photo: {turn['blip_caption']}]"
    return text


def store_conversation(log: EventLog, index: Index, sample: dict) -> tuple[str, dict[str, set[str]]]:
    """Save every turn of a conversation; return its project and memory id -> turn ids."""
    project = sample["sample_id"].lower()
    by_memory: dict[str, set[str]] = defaultdict(set)
    for number, date, turns in sessions(sample["conversation"]):
        for turn in turns:
            meta = {"dia_id": turn["dia_id"], "session": number, "session_date": date}
            memory_id = log.save(project, turn_text(date, turn), tags=[turn["speaker"]], meta=meta)
            by_memory[memory_id].add(turn["dia_id"])
    index.catch_up(project)
    return project, by_memory


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


ABLATIONS: dict[str, dict[str, float | int | bool | str]] = {
    "default": {},
    "no neighbour smoothing": {"neighbour_weight": 0.0},
    "no neighbour context (keyword column)": {"context_weight": 0.0},
    "no tag boost": {"tag_boost": 0.0},
    "plain score fusion (neither)": {"neighbour_weight": 0.0, "tag_boost": 0.0},
    "keyword weight 0.3": {"keyword_weight": 0.3},
    "keyword weight 0.7": {"keyword_weight": 0.7},
    "candidate depth 50": {"depth": 50},
    "candidate depth 200": {"depth": 200},
    "neighbour weight 0.2": {"neighbour_weight": 0.2},
    "neighbour weight 0.4": {"neighbour_weight": 0.4},
    "context weight 0.3": {"context_weight": 0.3},
    "context weight 0.7": {"context_weight": 0.7},
    "vector oversample 2": {"oversample": 2},
    "vector oversample 8": {"oversample": 8},
    # Experiments of branch recall-2 (none adopted; see BENCHMARKS.md):
    "x smoothing radius 2 (decay 0.5)": {"neighbour_radius": 2},
    "x smoothing, earlier neighbour 0.7 of it": {"neighbour_before": 0.7},
    "x smoothing by the better neighbour (max)": {"neighbour_pool": "max"},
    "x spread out (radius 1, discount 0.3)": {"spread_radius": 1, "spread_discount": 0.3},
    "x keyword feedback (3 docs, 5 words, 0.3)": {"feedback_docs": 3},
    "x vector neighbour context 0.5, no smoothing": {"vec_ctx_weight": 0.5, "neighbour_weight": 0.0},
    "x scores completed (keyword depth 1000)": {"complete_depth": 1000},
    "x scores completed, floor (keyword depth 300)": {"complete_depth": 300, "complete_floor": True},
    "x scores completed + neighbours scored (1000)": {"complete_depth": 1000, "exact_smooth": True},
    "x vector neighbour context 0.5 + keyword smoothing 0.3": {"vec_ctx_weight": 0.5, "kw_smooth": 0.3, "neighbour_weight": 0.0},
    "x proximity (word pairs: phrase 0.10, window 0.05)": {"sdm_ordered": 0.10, "sdm_unordered": 0.05},
    "x words in half the project's memories left out": {"project_common_share": 0.5},
}


def store_all(data: list[dict], log: EventLog, index: Index) -> list[tuple[str, dict[str, set[str]], list[dict]]]:
    """Save every conversation; return (project, memory id -> turn ids, questions) of each."""
    return [(*store_conversation(log, index, sample), sample["qa"]) for sample in data]


def evaluate(index: Index, stored: list[tuple[str, dict[str, set[str]], list[dict]]]) -> dict:
    """Ask every question in its own project; recall@5/@10 per category, latency, leaks."""
    recalls: dict[int, dict[int, list[float]]] = {5: defaultdict(list), 10: defaultdict(list)}
    latencies, wrong_project, rewritten, dropped, unanswerable = [], 0, 0, 0, 0
    modes: set[str] = set()
    for project, by_memory, questions in stored:
        turns = {d for ids in by_memory.values() for d in ids}
        for qa in questions:
            evidence, r, d = normalize_evidence(qa.get("evidence", []), turns)
            rewritten, dropped = rewritten + r, dropped + d
            if not evidence:
                unanswerable += 1
                continue
            t0 = time.perf_counter()
            result = index.search(str(qa["question"]), project=project, limit=10)
            latencies.append((time.perf_counter() - t0) * 1000)
            modes.add(result.mode)
            wrong_project += sum(1 for h in result.hits if h.memory.project != project)
            found = [by_memory.get(h.memory.id, set()) for h in result.hits]
            for k in (5, 10):
                hit_turns = set().union(*found[:k]) if found[:k] else set()
                recalls[k][qa["category"]].append(len(hit_turns & set(evidence)) / len(evidence))
    return {
        "modes": sorted(modes),
        "questions": sum(len(v) for v in recalls[5].values()),
        "evidence_rewritten": rewritten,
        "evidence_dropped": dropped,
        "questions_without_evidence": unanswerable,
        "recall": {
            str(k): {
                **{CATEGORIES[c]: round(statistics.mean(v), 4) for c, v in sorted(recalls[k].items())},
                "cat1-4": round(statistics.mean([x for c, v in recalls[k].items() if c != 5 for x in v]), 4),
            }
            for k in (5, 10)
        },
        "search_ms_p50": round(statistics.median(latencies), 2),
        "search_ms_p95": round(percentile(latencies, 0.95), 2),
        "wrong_project_results": wrong_project,
    }


def run(data_path: Path, embedder_kind: str, ablate: bool) -> dict:
    data = json.loads(data_path.read_text())
    root = Path(tempfile.mkdtemp(prefix="mnemolog-locomo-"))
    log = EventLog(root)
    embedder = None
    if embedder_kind != "none":
        from projector.embed import make_embedder

        embedder = make_embedder(embedder_kind)
    index = Index(log, embedder)
    started = time.perf_counter()
    stored = store_all(data, log, index)
    results: dict = {"embedder": embedder_kind, "store_seconds": round(time.perf_counter() - started, 1)}
    results.update(evaluate(index, stored))
    if ablate:
        results["ablations"] = {}
        for name, changes in ABLATIONS.items():
            index.tuning = dataclasses.replace(SearchTuning(), **changes)
            outcome = evaluate(index, stored)
            results["ablations"][name] = {f"recall@{k}": outcome["recall"][k]["cat1-4"] for k in ("5", "10")}
    index.close()
    shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--embedder", default="minilm", choices=["minilm", "none"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--ablate", action="store_true", help="also rank with each tuning knob changed")
    args = parser.parse_args()
    results = run(args.data, args.embedder, args.ablate)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
