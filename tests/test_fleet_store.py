"""The fleet database on real SQLite and real PostgreSQL: schema and migrations, idempotent writes,
rejects with reasons, and ``fleet stats --db`` giving the same numbers as ``--input``."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from edgeagent.fleet.stats import summarize
from edgeagent.fleetserver import migrations
from edgeagent.fleetserver.database import open_store
from edgeagent.fleetserver.store import StoreError
from edgeagent.fleetserver.traces import COLUMNS, Parsed, TurnRow, parse_message
from benchmarks.broker import REPO
from tests.collector_support import db_url, make_trace, pg_server, pg_url  # noqa: F401

TOPIC = "edgeagent/porch/telemetry/turn"


def msg(payload: dict | bytes, topic: str = TOPIC) -> Parsed:
    return parse_message(topic, payload if isinstance(payload, bytes) else json.dumps(payload).encode())


@pytest.mark.parametrize("payload, reason", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object but list"),
    (b"\xff\xfe", "not JSON"),
    (json.dumps(make_trace("porch", 1, turn_id="")).encode(), "turn_id must be a non-empty string"),
    (json.dumps(make_trace("kitchen", 1)).encode(), "does not match the topic's device 'porch'"),
    (json.dumps(make_trace("porch", 1, outcome="great")).encode(), "outcome 'great' is not one of"),
    (json.dumps(make_trace("porch", 1, started_at="yesterday")).encode(), "not an ISO 8601 time"),
    (json.dumps(make_trace("porch", 1, started_at="2026-12-01T10:00:00")).encode(), "has no time zone"),
    (json.dumps(make_trace("porch", 1, ttfa_ms=-5)).encode(), "ttfa_ms must be a number from 0"),
    (json.dumps(make_trace("porch", 1, ttfa_ms="fast")).encode(), "ttfa_ms must be a number"),
    (json.dumps(make_trace("porch", 1, ttfa_ms=True)).encode(), "ttfa_ms must be a number"),
    (json.dumps(make_trace("porch", 1, llm_tokens=2.5)).encode(), "llm_tokens must be a whole number"),
    (json.dumps(make_trace("porch", 1, barge_in="yes")).encode(), "barge_in must be true or false"),
    (json.dumps(make_trace("porch", 1, transcript="a\u0000b")).encode(), "NUL character"),
    (json.dumps(make_trace("porch", 1, error="\ud800")).encode(), "lone surrogate"),
    (b'{"turn_id": "x", "pad": "' + b"a" * 70000 + b'"}', "payload too large"),
])
def test_malformed_payloads_are_refused_with_a_reason(payload, reason):
    parsed = parse_message(TOPIC, payload)
    assert parsed.turn is None and parsed.reason is not None and reason in parsed.reason, parsed.reason


def test_status_and_other_topics():
    assert parse_message("edgeagent/porch/status", b"online").status == "online"
    assert "not online or offline" in parse_message("edgeagent/porch/status", b"maybe").reason
    assert "not a telemetry or status topic" in parse_message("edgeagent/porch/state", b"{}").reason


def test_text_and_unknown_fields_are_kept_as_extra():
    parsed = msg(make_trace("porch", 1, transcript="what time is it", end_of_turn_reason="silence", future=[1]))
    assert parsed.turn.get("end_of_turn_reason") == "silence"
    assert json.loads(parsed.turn.extra) == {"transcript": "what time is it", "future": [1]}


@pytest.fixture
def store(db_url):  # noqa: F811
    """A migrated fleet database, on SQLite and on PostgreSQL."""
    opened = open_store(db_url)
    yield opened
    opened.close()


def test_schema_migrates_once_and_matches_the_columns(store):
    assert store.version() == migrations.LATEST
    assert store.migrate() == []  # a second collector starting finds nothing to do
    cursor = store.conn.execute("SELECT * FROM turns LIMIT 0")
    assert [d[0] for d in cursor.description] == [*COLUMNS, "stored_at"]


def test_writes_are_idempotent_statuses_newest_wins_rejects_keep_the_payload(store):
    first = [msg(make_trace("porch", n)) for n in range(5)]
    assert [r.turn_id for r in store.write(first)] == [f"porch-{n}" for n in range(5)]
    again = [msg(make_trace("porch", 4)), msg(make_trace("porch", 5)), msg(make_trace("porch", 5)),
             msg(b"garbage"), parse_message("edgeagent/porch/status", b"offline",
                                             datetime(2026, 12, 1, 10, 0, 1, tzinfo=timezone.utc)),
             parse_message("edgeagent/porch/status", b"online", datetime(2026, 12, 1, 10, 0, 2, tzinfo=timezone.utc))]
    assert [r.turn_id for r in store.write(again)] == ["porch-5"]  # redeliveries change nothing
    stale = parse_message("edgeagent/porch/status", b"offline", datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc))
    store.write([stale])  # an older status arriving late does not win
    assert store.counts() == {"turns": 6, "devices": 1, "rejects": 1}
    assert store.devices() == {"porch": "online"}
    [(topic, reason, payload)] = store.rejects()
    assert topic == TOPIC and reason.startswith("not JSON") and payload == b"garbage"
    stored = store._execute("SELECT ttfa_ms, llm_tokens, barge_in, extra FROM turns WHERE turn_id = %s", ("porch-3",))
    assert stored[0][:3] == (903.0, 31, False) and stored[0][3] is None


def test_a_row_the_database_refuses_becomes_a_reject_and_the_rest_are_stored(store):
    good = [msg(make_trace("porch", n)) for n in range(3)]
    bad = msg(make_trace("porch", 9))
    row = bad.turn
    # past our own checks (as a future schema bug might be): a NOT NULL column left empty
    bad.turn = TurnRow(row.turn_id, row.device_id, row.started_at, None, row.optional, row.extra)  # type: ignore[arg-type]
    new = store.write([good[0], bad, *good[1:]])
    assert sorted(r.turn_id for r in new) == ["porch-0", "porch-1", "porch-2"]
    assert bad.reason.startswith("database refused it") and bad.turn is None
    assert store.counts() == {"turns": 3, "devices": 0, "rejects": 1}


def _traces(devices: int, turns: int) -> list[dict]:
    rng = random.Random(5)
    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    out = []
    for d in range(devices):
        for n in range(turns):
            outcome = rng.choice(["answered", "answered", "answered", "barged_in", "no_speech", "error"])
            t = make_trace(f"dev{d}", n, outcome=outcome,
                           started_at=(start + timedelta(minutes=n)).isoformat().replace("+00:00", "Z"),
                           ttfa_ms=round(rng.lognormvariate(7, 0.3), 1), llm_ttft_ms=round(rng.uniform(100, 400), 1),
                           barge_in=outcome == "barged_in",
                           barge_in_stop_ms=round(rng.uniform(1, 30), 1) if outcome == "barged_in" else None)
            if outcome == "no_speech":
                t.update(ttfa_ms=None, llm_ttft_ms=None, tts_first_chunk_ms=None, end_of_speech_to_final_ms=None)
            out.append(t)
    return out


def test_stats_from_the_database_equal_stats_from_files(db_url, tmp_path):  # noqa: F811
    traces = _traces(devices=4, turns=60)
    jsonl = tmp_path / "traces.jsonl"
    jsonl.write_text("".join(json.dumps(t) + "\n" for t in traces))
    store = open_store(db_url)
    store.write([msg(t, f"edgeagent/{t['device_id']}/telemetry/turn") for t in traces])
    store.close()
    now = datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)
    for window, device in ((None, None), (timedelta(minutes=30), None), (None, "dev2")):
        expected = summarize(traces, window, device, now=now)
        assert {s.stage for s in expected.stages} >= {"ttfa_ms", "barge_in_stop_ms"} and expected.turns > 20
        got = open_store(db_url, migrate=False).summarize(window, device, now=now)
        assert got.turns == expected.turns and got.devices == expected.devices
        assert got.outside_window == expected.outside_window
        assert got.stages == expected.stages  # same P50/P90 (linear interpolation) to 0.1 ms

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgeagent", "fleet", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=60)

    from_db, from_file = cli("--json", "stats", "--db", db_url), cli("--json", "stats", "--input", str(jsonl))
    assert from_db.returncode == 0, from_db.stderr
    assert json.loads(from_db.stdout)["stages"] == json.loads(from_file.stdout)["stages"]
    table = cli("stats", "--db", db_url, "--device", "dev1")
    assert "dev1" in table.stdout and "dev2" not in table.stdout and "60 turns from 1 devices" in table.stdout


def test_stats_refuses_what_is_not_a_fleet_database(tmp_path, pg_url):  # noqa: F811
    def stats(url: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgeagent", "fleet", "stats", "--db", url], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    missing = stats(f"sqlite:///{tmp_path}/typo.db")
    assert missing.returncode == 1 and "no SQLite database at" in missing.stderr
    assert not (tmp_path / "typo.db").exists()  # not created by a read
    empty = stats(pg_url)
    assert empty.returncode == 1 and "no fleet tables yet" in empty.stderr
    wrong = stats("mysql://x")
    assert wrong.returncode == 1 and "use sqlite:///" in wrong.stderr
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):
        open_store("postgresql://nobody@127.0.0.1:1/none")
