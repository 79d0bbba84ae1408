"""The pure core: memtable versions, snapshot visibility, compaction picking and survival rules.
No event loop, no files."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from quanta._storage.compaction import survivors
from quanta._storage.manifest import FileMeta, VersionEdit
from quanta._storage.memtable import Memtable, visible_versions
from quanta._storage.version import LevelPolicy, Version, pick_compaction


def meta(number: int, smallest: bytes, largest: bytes, size: int = 100, seq: int = 1) -> FileMeta:
    return FileMeta(number=number, size=size, smallest=smallest, largest=largest, min_seq=seq, max_seq=seq, entries=1)


def test_memtable_snapshot_reads_see_older_versions() -> None:
    m = Memtable(1)
    m.apply(1, [b"a"], [b"v1"])
    m.apply(2, [b"a"], [b"v2"])
    m.apply(3, [b"a"], [None])
    assert m.get(b"a", 1) == (1, b"v1")
    assert m.get(b"a", 2) == (2, b"v2")
    assert m.get(b"a", 3) == (3, None)
    assert m.get(b"a", 0) is None
    assert m.get(b"b", 3) is None


def test_memtable_later_duplicate_in_batch_wins_small_and_bulk() -> None:
    for n in (3, 1000):  # below and above the bulk-apply threshold
        m = Memtable(1)
        keys = [b"k%d" % i for i in range(n)] + [b"k0"]
        values: list[bytes | None] = [b"x"] * n + [b"last"]
        m.apply(7, keys, values)
        assert m.get(b"k0", 7) == (7, b"last")
        assert len(m) == n


def test_memtable_bulk_apply_keeps_history_for_overwrites() -> None:
    m = Memtable(1)
    m.apply(1, [b"k%04d" % i for i in range(500)], [b"old"] * 500)
    m.apply(2, [b"k%04d" % i for i in range(0, 1000, 2)], [b"new"] * 500)
    assert m.get(b"k0000", 1) == (1, b"old")
    assert m.get(b"k0000", 2) == (2, b"new")
    assert m.get(b"k0998", 1) is None
    assert list(m.latest.keys()) == sorted(m.latest.keys())


@given(st.lists(st.integers(1, 50), min_size=1, max_size=8, unique=True), st.lists(st.integers(0, 60), max_size=5))
def test_visible_versions_keep_exactly_what_snapshots_read(seqs: list[int], snaps: list[int]) -> None:
    versions = [(s, b"%d" % s) for s in sorted(seqs, reverse=True)]
    snaps = sorted(snaps)
    kept = visible_versions(versions, snaps)
    assert kept[0] == versions[0]  # the newest always survives
    for snap in snaps:  # every snapshot reads the same version before and after
        before = next((v for v in versions if v[0] <= snap), None)
        after = next((v for v in kept if v[0] <= snap), None)
        assert before == after


def test_survivors_drop_bottom_tombstones_only_when_allowed() -> None:
    entries = [(b"a", 5, None), (b"a", 3, b"x"), (b"b", 4, b"y")]
    assert list(survivors(iter(entries), [], drop_tombstones=False)) == [(b"a", 5, None), (b"b", 4, b"y")]
    assert list(survivors(iter(entries), [], drop_tombstones=True)) == [(b"b", 4, b"y")]
    # a snapshot at 3 still reads b"x": both versions stay
    assert list(survivors(iter(entries), [3], drop_tombstones=True)) == [
        (b"a", 5, None),
        (b"a", 3, b"x"),
        (b"b", 4, b"y"),
    ]


def test_version_apply_orders_levels_and_checks_overlap() -> None:
    v = Version().apply(VersionEdit(added=[(0, meta(1, b"a", b"z", seq=1)), (0, meta(2, b"c", b"d", seq=2))]))
    assert [f.number for f in v.levels[0]] == [2, 1]  # newest first
    v = v.apply(VersionEdit(added=[(1, meta(4, b"m", b"p")), (1, meta(3, b"a", b"c"))]))
    assert [f.number for f in v.levels[1]] == [3, 4]
    v.check_invariants()
    assert v.find_in_level(1, b"b") is not None and v.find_in_level(1, b"e") is None
    assert [f.number for f in v.overlapping(1, b"c", b"n")] == [3, 4]
    v = v.apply(VersionEdit(deleted=[(1, 3)]))
    assert [f.number for f in v.levels[1]] == [4]


def test_pick_compaction_l0_trigger_and_level_size() -> None:
    policy = LevelPolicy(l0_compaction_trigger=2, l1_target_bytes=1000, level_multiplier=10)
    v = Version().apply(VersionEdit(added=[(0, meta(1, b"a", b"c", seq=1))]))
    assert pick_compaction(v, policy) is None
    v = v.apply(VersionEdit(added=[(0, meta(2, b"b", b"d", seq=2)), (1, meta(3, b"c", b"e"))]))
    task = pick_compaction(v, policy)
    assert task is not None and task.level == 0 and task.output_level == 1
    assert {f.number for f in task.all_inputs} == {1, 2, 3}
    assert task.drop_tombstones  # nothing deeper
    big = Version().apply(VersionEdit(added=[(1, meta(5, b"a", b"b", size=2000)), (2, meta(6, b"a", b"a"))]))
    task = pick_compaction(big, policy)
    assert task is not None and task.level == 1 and [f.number for f in task.next_inputs] == [6]
