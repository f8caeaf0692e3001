"""Replay ledger: single-use invitations and NTAG 424 counters, atomic and durable."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge_agent.store import Delta, Store, StoreSettings


def settings(path: Path) -> StoreSettings:
    return StoreSettings(path=path, reserve_bytes=0, warn_free_bytes=0, critical_free_bytes=0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "replay.sqlite"


@pytest.fixture
def store(path: Path):
    with Store.open(settings(path)) as s:
        yield s


def test_use_once_is_true_exactly_once(store: Store) -> None:
    assert store.replay.use_once("inv-1", 2_000_000_000) is True
    assert store.replay.use_once("inv-1", 2_000_000_000) is False
    assert store.replay.use_once("inv-2", 2_000_000_000) is True
    assert store.replay.is_used("inv-1") and not store.replay.is_used("inv-3")


@pytest.mark.parametrize("round_", range(5))
def test_concurrent_use_once_has_one_winner(store: Store, round_: int) -> None:
    threads = 16
    barrier = threading.Barrier(threads)
    results: list[bool] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        won = store.replay.use_once(f"race-{round_}", 2_000_000_000)
        with lock:
            results.append(won)

    pool = [threading.Thread(target=attempt) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert sorted(results) == [False] * (threads - 1) + [True]


def test_ledger_survives_restart(path: Path) -> None:
    with Store.open(settings(path)) as store:
        assert store.replay.use_once("inv-1", 2_000_000_000)
        assert store.replay.advance_counter("04a1b2c3d4e5f6", 41)
    with Store.open(settings(path)) as store:
        assert store.replay.use_once("inv-1", 2_000_000_000) is False
        assert store.replay.last_counter("04:A1:B2:C3:D4:E5:F6") == 41
        assert store.replay.advance_counter("04a1b2c3d4e5f6", 41) is False


def test_counter_must_increase(store: Store) -> None:
    uid = bytes.fromhex("04a1b2c3d4e5f6")
    assert store.replay.last_counter(uid) is None
    assert store.replay.advance_counter(uid, 0) is True
    assert store.replay.advance_counter(uid, 5) is True
    assert store.replay.advance_counter(uid, 5) is False  # replayed message
    assert store.replay.advance_counter(uid, 3) is False  # older message
    assert store.replay.last_counter(uid) == 5
    assert store.replay.advance_counter(uid, 0xFFFFFF) is True
    with pytest.raises(ValueError):
        store.replay.advance_counter(uid, 0x1000000)
    with pytest.raises(ValueError):
        store.replay.advance_counter(uid, -1)
    # Other badges have their own counters.
    assert store.replay.advance_counter("04a1b2c3d4e5f7", 1) is True


def test_concurrent_counter_advances_accept_each_value_once(store: Store) -> None:
    uid = "04a1b2c3d4e5f6"
    accepted: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def attempt(values: list[int]) -> None:
        barrier.wait()
        for value in values:
            if store.replay.advance_counter(uid, value):
                with lock:
                    accepted.append(value)

    # Every thread tries the same counters: each may be accepted only once,
    # and only if greater than everything accepted before.
    pool = [threading.Thread(target=attempt, args=(list(range(1, 40)),)) for _ in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert len(accepted) == len(set(accepted))
    assert store.replay.last_counter(uid) == 39


def test_prune_forgets_only_expired_entries(store: Store) -> None:
    store.replay.use_once("old", 1_000)
    store.replay.use_once("new", 5_000)
    assert store.replay.prune(before=2_000) == 1
    assert not store.replay.is_used("old") and store.replay.is_used("new")
    assert store.replay.used_count() == 1


def test_used_invitations_from_the_central_are_remembered(store: Store) -> None:
    store.cache.apply_delta(Delta(cursor="c1", used_invitations=[("elsewhere", 2_000_000_000)]))
    assert store.replay.use_once("elsewhere", 2_000_000_000) is False


@pytest.mark.parametrize(
    ("invitation_id", "expires_at"), [("", 1), (None, 1), ("x", "tomorrow"), ("x", True)]
)
def test_use_once_validates_arguments(store: Store, invitation_id, expires_at) -> None:
    with pytest.raises(ValueError):
        store.replay.use_once(invitation_id, expires_at)
