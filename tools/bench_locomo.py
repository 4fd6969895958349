"""Retrieval quality on LoCoMo (../shared/bench/locomo-dev.json), through the real save and
search paths: every dialog turn saved as one memory (one project per conversation), every
question searched in its own project; recall@5/@10 of the evidence turns per category.
With ``--ablate``, also each tuning knob changed in turn, and a leave-one-conversation-out
estimate: for each conversation, the setting best on the other four, scored on it.

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


ABLATIONS: dict[str, dict[str, float]] = {
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
}


# Rows of ABLATIONS that are not candidates for the default, whatever their recall.
NOT_ADMISSIBLE = {
    "context weight 0.7": "a memory's neighbour can outrank the memory that says the searched word "
                          "(BENCHMARKS.md, LoCoMo section; tests/projector/test_context.py)",
}


def store_all(data: list[dict], log: EventLog, index: Index) -> list[tuple[str, dict[str, set[str]], list[dict]]]:
    """Save every conversation; return (project, memory id -> turn ids, questions) of each."""
    return [(*store_conversation(log, index, sample), sample["qa"]) for sample in data]


# Recall of each question of categories 1-4, by conversation (project), for k = 5 and 10.
PerConversation = dict[str, dict[int, list[float]]]


def evaluate(index: Index, stored: list[tuple[str, dict[str, set[str]], list[dict]]]) -> tuple[dict, PerConversation]:
    """Ask every question in its own project; recall@5/@10 per category, latency, leaks; and
    each conversation's recalls of categories 1-4."""
    recalls: dict[int, dict[int, list[float]]] = {5: defaultdict(list), 10: defaultdict(list)}
    per_conversation: PerConversation = {}
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
                recall = len(hit_turns & set(evidence)) / len(evidence)
                recalls[k][qa["category"]].append(recall)
                if qa["category"] != 5:
                    per_conversation.setdefault(project, {5: [], 10: []})[k].append(recall)
    summary = {
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
    return summary, per_conversation


def held_out(per_setting: dict[str, PerConversation]) -> dict:
    """Leave one conversation out: for each, the setting with the best recall@5 + recall@10 on
    the other conversations (their questions pooled), scored on it; then recall over every
    question so scored. How the knobs' choice on these conversations carries to unseen ones.
    Also the default's recall per conversation, to show how much one conversation differs."""
    conversations = sorted(next(iter(per_setting.values())))
    default = per_setting["default"]
    per_setting = {name: v for name, v in per_setting.items() if name not in NOT_ADMISSIBLE}

    def pooled(setting: str, k: int, among: list[str]) -> float:
        values = [x for c in among for x in per_setting[setting][c][k]]
        return sum(values) / len(values)

    chosen: dict[str, str] = {}
    scored: dict[int, list[float]] = {5: [], 10: []}
    for left_out in conversations:
        others = [c for c in conversations if c != left_out]
        best = max(per_setting, key=lambda name: pooled(name, 5, others) + pooled(name, 10, others))
        chosen[left_out] = best
        for k in (5, 10):
            scored[k].extend(per_setting[best][left_out][k])
    return {
        "settings_left_out": sorted(NOT_ADMISSIBLE),
        "setting_chosen_per_conversation": chosen,
        **{f"recall@{k}": round(statistics.mean(scored[k]), 4) for k in (5, 10)},
        "default_per_conversation": {
            c: {"questions": len(default[c][5]), **{f"recall@{k}": round(statistics.mean(default[c][k]), 4) for k in (5, 10)}}
            for c in conversations
        },
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
    summary, _ = evaluate(index, stored)
    results.update(summary)
    if ablate:
        results["ablations"], per_setting = {}, {}
        for name, changes in ABLATIONS.items():
            index.tuning = dataclasses.replace(SearchTuning(), **changes)
            outcome, per_setting[name] = evaluate(index, stored)
            results["ablations"][name] = {f"recall@{k}": outcome["recall"][k]["cat1-4"] for k in ("5", "10")}
        results["held_out_categories_1_4"] = held_out(per_setting)
    index.close()
    shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--embedder", default="minilm", choices=["minilm", "none"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--ablate", action="store_true",
                        help="also rank with each tuning knob changed, and estimate by leaving one "
                             "conversation out what choosing among those settings gives on unseen ones")
    args = parser.parse_args()
    results = run(args.data, args.embedder, args.ablate)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
