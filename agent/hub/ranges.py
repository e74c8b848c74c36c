"""Seq ranges: what a hub holds of a device, and the holes between (pure functions, inclusive ends)."""

from __future__ import annotations

from collections.abc import Iterable

Range = tuple[int, int]


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, with overlapping and adjacent ranges joined: [(1,3),(4,6),(9,9)] -> [(1,6),(9,9)]."""
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def from_seqs(seqs: Iterable[int]) -> list[Range]:
    return merge((s, s) for s in seqs)


def holes(covered: Iterable[Range], lo: int, hi: int) -> list[Range]:
    """The parts of [lo, hi] that ``covered`` leaves out."""
    out: list[Range] = []
    nxt = lo
    for a, b in merge(covered):
        if b < nxt:
            continue
        if a > hi:
            break
        if a > nxt:
            out.append((nxt, min(a - 1, hi)))
        nxt = max(nxt, b + 1)
    if nxt <= hi:
        out.append((nxt, hi))
    return out


def overlaps(a: Range, b: Range) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def size(rs: Iterable[Range]) -> int:
    return sum(b - a + 1 for a, b in rs)
