"""Synthetic but varied memories and queries for benchmarks (deterministic per seed).

Run from a checkout:

    python tools/synth.py --count 5 --queries 5        # print a few, to see what they look like
    python tools/synth.py --store /tmp/s --count 100000 --project bench   # write a store

Used as a module by the benchmarks (``sys.path`` gets ``tools/``):

    from synth import Synth, write_store
    for content, tags, importance in Synth(seed=1).memories(1000): ...

Memories combine a few hundred vocabulary items through a dozen sentence shapes, plus a long
tail of generated code names, tickets, numbers and dates, so that at 100k memories the word
frequencies look like a real notebook's (a few very common words, many rare ones) and no two
memories are the same text. Queries are the questions an assistant would ask about them:
topic words, questions, and (a minority) fragments of saved memories.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from pathlib import Path

COMPONENTS = """billing service, auth gateway, search indexer, mobile app, admin dashboard, payment
webhook, notification worker, data pipeline, CI pipeline, staging cluster, invoice exporter, user
profile page, rate limiter, feature flag service, onboarding flow, reporting API, email templates, audit
log, session store, image resizer, checkout page, GraphQL layer, migration scripts, deploy scripts,
metrics exporter, cron scheduler, websocket server, PDF renderer, translation files, load balancer,
recommendation engine, fraud detector, inventory sync, shipping calculator, tax module, chat widget,
video transcoder, backup job, secrets vault, DNS setup, CDN config, help center, marketing site,
analytics warehouse, A/B testing framework, SSO bridge, password reset flow, export wizard, import
parser, permissions model""".replace("\n", " ").split(", ")
TECH = """PostgreSQL, SQLite, Redis, Kafka, RabbitMQ, FastAPI, Django, Flask, React, Vue, Svelte,
TypeScript, Rust, Go, Kotlin, Swift, Terraform, Kubernetes, Docker Compose, GitHub Actions, GitLab CI,
Celery, Elasticsearch, OpenSearch, S3, CloudFront, gRPC, protobuf, pydantic, SQLAlchemy, Alembic, pytest,
Playwright, Sentry, Prometheus, Grafana, nginx, Caddy, OpenTelemetry, uv, poetry, ruff, mypy, DuckDB,
ClickHouse, Snowflake, dbt, Airflow, Temporal, NATS, MinIO, Vault, Consul, Envoy, Istio, Helm, ArgoCD,
Pulumi, Bazel, Nix""".replace("\n", " ").split(", ")
PEOPLE = """Alice, Bob, Chen, Dana, Emeka, Farah, Gustavo, Hana, Ivan, Julia, Kenji, Lena, Mateo, Nadia,
Omar, Priya, Quentin, Rosa, Sven, Tariq, Uma, Viktor, Wen, Ximena, Yusuf, Zoe, Aiko, Bruno, Carmen,
Dmitri, Elif, Femi, Greta, Hiro, Ines, Jonas, Kofi, Leila, Marek, Noor""".replace("\n", " ").split(", ")
REASONS = """it keeps p95 latency under 200 ms, the team already knows it, it halves the hosting bill,
the old library is unmaintained, it removes a whole class of race conditions, the audit requires it, it
is what the client runs in production, it makes local development start in seconds, it avoids a vendor
lock-in, the benchmark showed three times the throughput, it has a stable API since years, the security
review flagged the alternative, it runs on the existing cluster, support contracts are cheaper, it
simplifies on-call""".replace("\n", " ").split(", ")
PROBLEMS = """times out after 30 seconds, returns duplicate rows, drops the last message, double-charges
on retry, leaks file descriptors, deadlocks under load, ignores the time zone, truncates long names,
crashes on empty input, loses the session after login, sends the email twice, rounds currency wrong,
blocks the event loop, fills the disk with logs, mis-sorts accented names, caches stale permissions,
rejects valid postcodes, corrupts the CSV header""".replace("\n", " ").split(", ")
FIXES = """restart the worker, pin the dependency to the previous minor version, raise the connection
pool to 50, add an index on created_at, disable HTTP/2 on the proxy, clear the CDN cache, bump the
timeout to 60 s, retry with exponential backoff, batch the writes by 500, move the job off peak hours,
set the locale explicitly, use UTC everywhere, vacuum the table weekly, split the queue by tenant,
rotate the credentials, add a circuit breaker""".replace("\n", " ").split(", ")
STATES = """blocked on the vendor, waiting for review, half migrated, behind a feature flag, rolled back
once, in staging since Monday, done except the docs, needs a load test, paused for the release freeze,
shipped to ten percent of users""".replace("\n", " ").split(", ")
PREFS = """short commit messages in the imperative, tabs over spaces in Makefiles only, type hints
everywhere, no emojis in code review comments, tests next to the code they test, small pull requests
under 300 lines, British spelling in user-facing text, dark mode screenshots in docs, answers with the
command first and the explanation after, f-strings over format, early returns over nested ifs, ISO
dates in logs, squash merges, meetings before noon, written proposals over calls""".replace(
    "\n", " ").split(", ")
MONTHS = "January February March April May June July August September October November December".split()
TAGS = """arch decision preference bug todo infra perf security ux testing deploy data api docs process
people billing mobile oncall release""".split()
_SYLLABLES = "ka to ri mo na se lu vi pe da qo zu fe xi bo gar len tor mip sul".split()


def _code_names(rng: random.Random, count: int) -> list[str]:
    """Made-up project code names ("Torvimo"): the long tail of rare words."""
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize())
    return sorted(names)


class Synth:
    """A deterministic stream of memories and queries."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.code_names = _code_names(random.Random(12345), 3000)  # the same tail for every seed
        self.n = 0

    def memory(self) -> tuple[str, list[str], int]:
        """(content, tags, importance) of the next memory; every one a distinct text."""
        r = self.rng
        self.n += 1
        c, t, p, code = r.choice(COMPONENTS), r.choice(TECH), r.choice(PEOPLE), r.choice(self.code_names)
        ticket = f"{r.choice(['OPS', 'WEB', 'API', 'DATA', 'SEC', 'MOB'])}-{r.randint(100, 99999)}"
        day = f"{r.randint(1, 28)} {r.choice(MONTHS)}"
        shapes = [
            lambda: (f"Decision for {code} ({ticket}): the {c} moves to {t} because {r.choice(REASONS)}. "
                     f"{r.choice(TECH)} was considered and rejected.", ["decision", "arch"]),
            lambda: (f"{p} prefers {r.choice(PREFS)}; keep doing that in the {c}.", ["preference", "people"]),
            lambda: (f"Bug {ticket}: the {c} {r.choice(PROBLEMS)} when it runs on {t}. "
                     f"Workaround: {r.choice(FIXES)}. Reported by {p} on {day}.", ["bug"]),
            lambda: (f"State of {code} ({c}): {r.choice(STATES)}. Next step: {r.choice(FIXES)}; {p} reviews it.",
                     ["todo", "process"]),
            lambda: (f"{p} owns the {c} and the {r.choice(COMPONENTS)}; ask them before touching {t}.", ["people"]),
            lambda: (f"Measured on {day}: the {c} on {t} answers in {r.randint(2, 900)} ms at p95 with "
                     f"{r.randint(10, 5000)} requests per second ({code}).", ["perf", "infra"]),
            lambda: (f"Incident {ticket} on {day}: the {c} {r.choice(PROBLEMS)}. Root cause was in {t}; "
                     f"fixed by {r.choice(FIXES)}. {p} wrote the postmortem.", ["oncall", "bug"]),
            lambda: (f"Release {r.randint(1, 9)}.{r.randint(0, 30)}.{r.randint(0, 20)} of {code} ships the "
                     f"{c} on {t}; {p} signs off.", ["release", "deploy"]),
            lambda: (f"The {c} talks to the {r.choice(COMPONENTS)} over {r.choice(['gRPC', 'REST', 'a queue', 'webhooks'])}; "
                     f"credentials live in {r.choice(['Vault', 'the secrets vault', 'env files', 'SSM'])}.",
                     ["arch", "security"]),
            lambda: (f"Meeting with {p} and {r.choice(PEOPLE)} on {day}: agreed that the {c} "
                     f"{r.choice(['needs', 'does not need', 'will get'])} {t} before {r.choice(MONTHS)}.",
                     ["decision", "people"]),
            lambda: (f"How to run the {c} locally: start {t}, then {r.choice(FIXES)}. "
                     f"Ask {p} if it {r.choice(PROBLEMS)}.", ["docs"]),
            lambda: (f"Customer {code} reported that the {c} {r.choice(PROBLEMS)}; ticket {ticket}, "
                     f"priority {r.choice(['low', 'medium', 'high', 'urgent'])}.", ["bug", "ux"]),
        ]
        text, tags = r.choice(shapes)()
        if r.random() < 0.15:  # some memories are longer notes
            text += " " + " ".join(f"Also: {r.choice(FIXES)} for the {r.choice(COMPONENTS)}." for _ in range(r.randint(1, 4)))
        tags = sorted(set(tags + r.sample(TAGS, r.randint(0, 2))))
        return f"{text} [#{self.n}]", tags, r.randint(1, 10)

    def memories(self, count: int) -> Iterator[tuple[str, list[str], int]]:
        """The next ``count`` memories."""
        for _ in range(count):
            yield self.memory()

    def query(self) -> str:
        """One search an assistant might run."""
        r = self.rng
        c, t, p, code = r.choice(COMPONENTS), r.choice(TECH), r.choice(PEOPLE), r.choice(self.code_names)
        forms = [
            f"why did we choose {t} for the {c}",
            f"{c} bug workaround",
            f"who owns the {c}",
            f"what does {p} prefer",
            f"state of {code}",
            f"{t} latency numbers",
            f"{c} {r.choice(PROBLEMS)}",
            f"decision about {t}",
            r.choice(FIXES),
            f"problems with {t} in production",
            f"incident postmortem {c}",
            f"how do I run the {c} locally",
            f"what did {p} and {r.choice(PEOPLE)} agree on",
            f"{code} release",
            f"customer complaint {c} {r.choice(['urgent', 'high'])} priority",
        ]
        return r.choice(forms)

    def queries(self, count: int) -> list[str]:
        """``count`` queries (repeats are possible but rare)."""
        return [self.query() for _ in range(count)]


def write_store(root: Path | str, project: str, count: int, seed: int = 1, batch: int = 1000) -> int:
    """Append ``count`` synthetic memories to ``project`` in a store at ``root`` (durability
    ``never``, ``batch`` events per write); returns the number of events written."""
    from eventlog import EventLog

    log = EventLog(root, durability="never", client="synth")
    synth, events, written = Synth(seed), [], 0
    for content, tags, importance in synth.memories(count):
        events.append(log.build_save(project, content, tags, importance))
        if len(events) == batch:
            log.append(project, events)
            written, events = written + len(events), []
    log.append(project, events)
    return written + len(events)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5, help="memories to print or write")
    parser.add_argument("--queries", type=int, default=0, help="queries to print")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--store", type=Path, help="write a store here instead of printing")
    parser.add_argument("--project", default="bench")
    args = parser.parse_args(argv)
    if args.store:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        print(write_store(args.store, args.project, args.count, args.seed), "events written to", args.store)
        return
    synth = Synth(args.seed)
    for content, tags, importance in synth.memories(args.count):
        print(f"[{importance}] {content}  {tags}")
    for q in synth.queries(args.queries):
        print("?", q)


if __name__ == "__main__":
    main()
