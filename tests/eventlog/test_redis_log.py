"""What only the Redis backend has: its keys, passwords, timeouts, reconnection, replicas, the
listener, and moving events between backends. The rest is in the contract suite."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _redis_server import RedisServer

from eventlog import (
    EventLog,
    ReplicationTimeout,
    StoreError,
    StoreUnavailable,
    encode_event,
    fold,
)
from eventlog.redis_log import RedisEventLog, check_redis_url, redact_url
from eventlog.transfer import export_lines, import_lines

SECRET = "hunter2-very-secret"


@pytest.fixture
def rlog(redis_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[RedisEventLog]:
    log = RedisEventLog(redis_url, prefix=redis_prefix, root=tmp_path / "local", client="pytest")
    yield log
    log.close()


def raw_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=5)


# -- URLs (pure) -------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    (f"redis://:{SECRET}@h:1/0", "redis://:***@h:1/0"),
    (f"rediss://bob:{SECRET}@h:6380/2", "rediss://bob:***@h:6380/2"),
    ("redis://bob@h/0", "redis://bob@h/0"),
])
def test_redact_url_hides_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("url", ["redis://h:6379/x", f"redis://:{SECRET}@:1/0", "http://h/0",
                                 f"redis://u:{SECRET}@h:0/0", "redis://h:port/0"])
def test_check_redis_url_refuses_without_the_password(url: str) -> None:
    with pytest.raises(ValueError) as info:
        check_redis_url(url)
    assert SECRET not in str(info.value)


# -- layout --------------------------------------------------------------------------------------


def test_one_stream_per_project_under_the_prefix_and_a_set_of_projects(rlog: RedisEventLog, redis_url: str) -> None:
    saved = rlog.build_save("acme", "layout", tags=["x"])
    rlog.append("acme", [saved])
    rlog.save("beta", "other")
    r = raw_client(redis_url)
    p = rlog.prefix
    assert sorted(r.scan_iter(match=f"{p}*")) == sorted([f"{p}log:acme".encode(), f"{p}log:beta".encode(),
                                                        f"{p}projects".encode()])
    assert r.smembers(f"{p}projects") == {b"acme", b"beta"}
    ((_, fields),) = r.xrange(f"{p}log:acme")
    assert fields == {b"e": encode_event(saved)}  # the file format's line, byte for byte
    assert rlog.projects() == ["acme", "beta"]
    other_prefix = RedisEventLog(redis_url, prefix=p + "other:", root=rlog.root)
    assert other_prefix.projects() == [] and list(other_prefix.read_all()) == []


def test_an_entry_with_other_fields_is_a_problem_not_a_crash(rlog: RedisEventLog, redis_url: str) -> None:
    rlog.save("acme", "good")
    r = raw_client(redis_url)
    r.xadd(f"{rlog.prefix}log:acme", {"line": b"{}", "extra": b"1"})
    rlog.save("acme", "also good")
    (problem,) = rlog.problems("acme")
    assert problem.line_no == 2 and "exactly one field 'e'" in (problem.problem or "")
    assert [e.content for e in rlog.read("acme")] == ["good", "also good"]  # type: ignore[union-attr]


# -- passwords, timeouts, reconnection -----------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_redis_fails_fast_and_never_shows_the_password(tmp_path: Path) -> None:
    log = RedisEventLog(f"redis://bob:{SECRET}@127.0.0.1:{closed_port()}/0", root=tmp_path, timeout=1)
    assert SECRET not in repr(log) and SECRET not in log.describe() and "bob:***@" in log.describe()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        log.save("acme", "nowhere to go")
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert "cannot append to project 'acme'" in message and "bob:***@127.0.0.1" in message
    assert SECRET not in message and SECRET not in repr(info.value)
    for call in (log.projects, lambda: log.heads(["acme"]), lambda: list(log.read("acme"))):
        with pytest.raises(StoreUnavailable):
            call()


def test_a_server_that_never_answers_times_out_within_the_bound(tmp_path: Path) -> None:
    # A loopback listener that accepts connections and never replies: every call must give up.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        log = RedisEventLog(f"redis://127.0.0.1:{port}/0", root=tmp_path, timeout=0.3)
        for call in (lambda: log.save("acme", "x"), lambda: log.heads(["acme"])):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="did not answer within 0.3 s"):
                call()
            took = time.monotonic() - started
            assert took < 1.0, took  # timeouts are not retried: about 0.3 s


def test_a_password_protected_server(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", extra=["--requirepass", SECRET]).start()
    try:
        good = RedisEventLog(f"redis://:{SECRET}@127.0.0.1:{server.port}/0", root=tmp_path)
        assert [e.content for e in good.read("acme")] == [] and good.save("acme", "behind a password")
        for url in (f"redis://:wrong-{SECRET}@127.0.0.1:{server.port}/0", f"redis://127.0.0.1:{server.port}/0"):
            with pytest.raises(StoreError) as info:
                RedisEventLog(url, root=tmp_path).save("acme", "refused")
            assert SECRET not in str(info.value)
        assert len(list(good.read("acme"))) == 1
    finally:
        server.stop()


@pytest.mark.slow
def test_the_same_log_object_recovers_when_redis_comes_back(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", aof=True).start()
    try:
        log = RedisEventLog(server.url, root=tmp_path, timeout=1)
        first = log.save("acme", "before the outage")
        server.kill()
        with pytest.raises(StoreUnavailable):
            log.save("acme", "during the outage")
        server.start()  # same port, same AOF
        second = log.save("acme", "after the outage")  # no new object, no restart
        assert [e.memory_id for e in log.read("acme")] == [first, second]
    finally:
        server.stop()


# -- replicas ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_wait_for_replicas(tmp_path: Path) -> None:
    primary = RedisServer(tmp_path / "primary").start()
    replica = RedisServer(tmp_path / "replica", extra=["--replicaof", "127.0.0.1", str(primary.port)])
    try:
        lonely = RedisEventLog(primary.url, root=tmp_path, wait_replicas=1, wait_timeout=0.2)
        with pytest.raises(ReplicationTimeout, match="reached Redis.*only 0 of 1 replica"):
            lonely.save("acme", "no replica yet")
        replica.start()
        deadline = time.monotonic() + 10
        while raw_client(replica.url).info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica never connected"
            time.sleep(0.05)
        confirmed = RedisEventLog(primary.url, root=tmp_path, wait_replicas=1, wait_timeout=5)
        confirmed.save("acme", "confirmed by a replica")
        from_replica = RedisEventLog(replica.url, root=tmp_path)
        assert [e.content for e in from_replica.read("acme")] == [  # type: ignore[union-attr]
            "no replica yet", "confirmed by a replica"]
    finally:
        replica.stop()
        primary.stop()


# -- the listener --------------------------------------------------------------------------------


def test_the_listener_notices_appends_new_projects_and_a_restart(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", aof=True).start()
    seen: list[str] = []
    got = threading.Event()

    def on_change(project: str) -> None:
        seen.append(project)
        got.set()

    writer = RedisEventLog(server.url, root=tmp_path / "a", timeout=1)
    writer.save("acme", "before listening")
    watch = RedisEventLog(server.url, root=tmp_path / "b", timeout=1).watch(on_change)
    try:
        time.sleep(0.3)
        assert seen == []  # what was there before is not news
        for project in ("acme", "brand-new"):
            got.clear()
            started = time.monotonic()
            writer.save(project, f"news for {project}")
            assert got.wait(2.0), f"no notice for {project}"
            assert time.monotonic() - started < 1.0 and seen[-1] == project
        server.kill()
        time.sleep(0.3)
        server.start()
        got.clear()
        writer.save("acme", "after the restart")
        assert got.wait(5.0), "the listener did not come back"
    finally:
        watch.stop()
        server.stop()


# -- moving events between backends --------------------------------------------------------------


def test_export_import_files_to_redis_and_back_is_lossless_and_idempotent(rlog: RedisEventLog, tmp_path: Path) -> None:
    files = EventLog(tmp_path / "files", durability="never")
    for i in range(30):
        files.save("acme" if i % 3 else "beta", f"memory {i}", tags=[f"t{i % 4}"], importance=1 + i % 10)
    old = files.save("acme", "to be replaced")
    files.replace("acme", old, files.build_save("acme", "the replacement"))
    files.forget("beta", files.save("beta", "soon forgotten"))
    exported = list(export_lines(files))
    assert len(exported) == 35 and all(line.endswith(b"\n") for line in exported)

    report = import_lines(rlog, [*exported, b"not json\n", b"\n", exported[0]])
    assert (report.added, report.present, report.projects) == (35, 1, {"acme", "beta"})
    assert len(report.problems) == 1 and "line 36" in report.problems[0]
    assert list(export_lines(rlog)) == exported  # same lines, same order per project
    again = import_lines(rlog, exported)
    assert (again.added, again.present) == (0, 35)

    back = EventLog(tmp_path / "back")
    assert import_lines(back, export_lines(rlog)).added == 35
    assert fold(back.read_all()) == fold(files.read_all()) == fold(rlog.read_all())
    assert list(export_lines(back, ["beta"])) == list(export_lines(files, ["beta"]))


def test_without_redis_server_the_tests_fail_in_ci_and_skip_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    import _redis_server

    monkeypatch.setattr(_redis_server.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="in CI the Redis tests must run"):
        _redis_server.require_redis_server()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _redis_server.require_redis_server()


def test_rediss_talks_tls(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server = RedisServer(tmp_path / "redis")
    port = server.port
    server.extra = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                    "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    server.ping = lambda: _tls_up(port, cert)  # type: ignore[method-assign]
    server.start()
    try:
        log = RedisEventLog(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}", root=tmp_path, timeout=2)
        memory_id = log.save("acme", "over TLS")
        assert [e.memory_id for e in log.read("acme")] == [memory_id]
        with pytest.raises(StoreUnavailable):  # plain text to a TLS port: refused, not hung
            RedisEventLog(f"redis://127.0.0.1:{port}/0", root=tmp_path, timeout=1).projects()
    finally:
        server.stop()


def _tls_up(port: int, cert: Path) -> bool:
    import ssl

    context = ssl.create_default_context(cafile=str(cert))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
