"""Codes into shards and static ownership, as pure functions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.protocol.codes import KlineInterval
from bridge.protocol.shards import Entry, codes_of, ordinal_of, plan_shard, shard_of, static_shards
from bridge.records import Stream

codes = st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.", min_size=1, max_size=12), unique=True)


def test_the_hash_is_stable() -> None:
    """A code's shard is fixed by its text alone: these values must never change (replicas and versions agree)."""
    assert [shard_of(code, 12) for code in ("BTCUSDT", "AAPL.US", "00700.HK", "EURUSD")] == [3, 1, 7, 7]


@given(configured=codes, added=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8))
def test_adding_or_removing_a_code_moves_only_that_code(configured: list[str], added: str) -> None:
    """With one code more (or less), every other code stays in its shard."""
    before = {code: shard_of(code, 12) for code in configured}
    after = {code: shard_of(code, 12) for code in [*configured, added]}
    assert {code: after[code] for code in configured} == before
    fewer = {code: shard_of(code, 12) for code in configured[1:]}
    assert all(fewer[code] == before[code] for code in fewer)


def test_a_shard_is_planned_within_the_connection_cap_and_named_by_shard() -> None:
    """A shard's codes of each business go to as few connections as the cap allows, named <business>.sNN-i."""
    entries = [
        Entry("crypto", tuple(f"C{i}" for i in range(400)), (Stream.TRADE,), ()),
        Entry("stock", tuple(f"S{i}.US" for i in range(40)), (Stream.TRADE, Stream.KLINE), (KlineInterval.MIN_1,)),
    ]
    shard = shard_of("C0", 4)
    plans = plan_shard(shard, 4, entries, max_codes_per_connection=50)
    crypto = [plan for plan, entry in plans if entry.business == "crypto"]
    assert [plan.name for plan in crypto] == [f"crypto.s{shard:02d}-{i}" for i in range(len(crypto))]
    assert all(len(plan.codes) <= 50 for plan, _ in plans)
    planned = {code for plan, _ in plans for code in plan.codes}
    wanted = {code for codes in codes_of(shard, 4, entries).values() for code in codes}
    assert planned == wanted
    assert all(shard_of(code, 4) == shard for code in planned)


def test_static_ownership_covers_every_shard_once() -> None:
    """Replicas 0..count-1 own disjoint shards that together are all of them."""
    owned = [static_shards(index, 3, 12) for index in range(3)]
    assert owned[1] == (1, 4, 7, 10)
    assert sorted(shard for shards in owned for shard in shards) == list(range(12))


def test_the_index_comes_from_a_statefulset_pod_name() -> None:
    """``bridge-2`` is replica 2; a name without an ordinal gives none."""
    assert ordinal_of("infoway-bridge-2") == 2
    assert ordinal_of("bridge") is None
