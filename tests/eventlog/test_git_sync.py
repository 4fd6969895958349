"""Two machines sync their logs/ with git: the union merge driver never conflicts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from eventlog import EventLog, fold, present

GIT = shutil.which("git") or "/usr/bin/git"

pytestmark = pytest.mark.skipif(not Path(GIT).exists(), reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` isolated from the user's and the system's configuration."""
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    done = subprocess.run(
        [GIT, "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"git {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def lines(root: Path) -> dict[str, list[bytes]]:
    return {p.name: p.read_bytes().splitlines() for p in sorted((root / "logs").glob("*.jsonl"))}


@pytest.mark.slow
def test_two_clones_append_and_merge_both_ways_without_conflict(tmp_path: Path) -> None:
    laptop_root, desktop_root = tmp_path / "laptop", tmp_path / "desktop"
    laptop = EventLog(laptop_root, client="laptop")
    shared = [laptop.save("acme", f"shared fact {i}", tags=["base"]) for i in range(5)]
    laptop.save("beta", "beta fact")
    git(laptop_root / "logs", "init", "-q")
    assert git(laptop_root / "logs", "check-attr", "merge", "acme.jsonl") == "acme.jsonl: merge: union\n"
    commit_all(laptop_root / "logs", "first memories")
    git(tmp_path, "clone", "-q", str(laptop_root / "logs"), str(desktop_root / "logs"))
    desktop = EventLog(desktop_root, client="desktop")
    assert fold(desktop.read_all()) == fold(laptop.read_all())

    # Both machines append to the same logs (timestamps interleave): different memories, the
    # same fact saved on both sides, forgets of shared memories, re-saves racing forgets.
    desktop.forget("acme", shared[3])
    laptop.save("acme", "laptop: use ruff")
    laptop.save("acme", "both machines learn this")
    laptop.forget("acme", shared[0])
    laptop.save("acme", "shared fact 2", importance=9)  # ...then the desktop forgets it
    laptop.save("acme", "shared fact 3", importance=8)  # after the desktop forgot it
    laptop.save("gamma", "a project only the laptop has")
    desktop.save("acme", "desktop: use mypy")
    desktop.save("acme", "both machines learn this", importance=2)
    desktop.forget("acme", shared[1])
    desktop.forget("acme", shared[2])
    desktop.save("beta", "desktop beta fact")
    commit_all(laptop_root / "logs", "laptop work")
    commit_all(desktop_root / "logs", "desktop work")
    everything = {name: set(found) for name, found in lines(laptop_root).items()}
    for name, found in lines(desktop_root).items():
        everything.setdefault(name, set()).update(found)

    # Each side merges the other's work on its own: two different merge commits.
    git(laptop_root / "logs", "fetch", "-q", str(desktop_root / "logs"), "main")
    git(desktop_root / "logs", "fetch", "-q", "origin", "main")
    git(laptop_root / "logs", "merge", "-q", "--no-edit", "FETCH_HEAD")
    git(desktop_root / "logs", "merge", "-q", "--no-edit", "origin/main")
    assert fold(laptop.read_all()) == fold(desktop.read_all())

    # Then they sync with each other once more (a merge of the two merges).
    git(desktop_root / "logs", "pull", "-q", "--no-rebase", "--no-edit", "origin", "main")
    git(laptop_root / "logs", "pull", "-q", "--no-rebase", "--no-edit", str(desktop_root / "logs"), "main")

    for root in (laptop_root, desktop_root):
        assert git(root / "logs", "status", "--porcelain") == ""
        for name, found in lines(root).items():
            assert b"<<<<<<<" not in b"\n".join(found) and b">>>>>>>" not in b"\n".join(found)
            assert set(found) == everything[name]  # every event of both sides, nothing else
    assert lines(laptop_root) == lines(desktop_root)
    for log in (laptop, desktop):
        assert all(log.problems(project) == [] for project in log.projects())
    assert laptop.projects() == desktop.projects() == ["acme", "beta", "gamma"]
    laptop_state, desktop_state = fold(laptop.read_all()), fold(desktop.read_all())
    assert laptop_state == desktop_state

    alive = present(laptop_state)
    ids = {memory_id for (_, memory_id) in alive}
    assert shared[0] not in ids and shared[1] not in ids  # forgets from either side hold
    assert shared[2] not in ids  # the desktop forgot it after the laptop re-saved it
    assert shared[3] in ids and alive[("acme", shared[3])].importance == 8
    both = laptop.build_save("acme", "both machines learn this").memory_id
    assert alive[("acme", both)].importance == 2 and alive[("acme", both)].actor.client == "desktop"
    assert len(alive) == 8  # acme: facts 3 and 4, ruff, mypy, both; beta: two; gamma: one
