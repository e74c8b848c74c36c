"""Small-count protection of the counts that leave the unit.

A count of 1 pedestrian on one line at 03:00 can identify a person. Before a summary (or any other
encoder's payload) leaves the unit, the counts of *protected classes* (``privacy.small_counts.k``,
by default ``person`` and ``bicycle`` with k = 3; vehicles are not protected) are changed by one
rule, and the payload declares which rule it got. The local database keeps the true counts: the
rule is applied to the encoded copy only.

Modes:

- ``suppress``: a bin of a protected class with a count below its k is left out. Zero bins are left
  out too, so an absent bin means "0 to k-1" and never tells zero from one.
- ``merge`` (default): the small bins of one group (the same keys apart from ``class``) are added into
  one bin of class ``merge_class``; that bin is published when its sum reaches the smallest k of
  the classes merged, and left out otherwise. Classes at or above their k are published as they are.
- ``dp``: every bin of a protected class (zeros included: the caller passes the whole domain) gets
  Laplace noise of scale ``1/epsilon`` and is rounded to an integer. One person crossing a line
  changes one bin by 1 (sensitivity 1), so each bin is ``epsilon``-differentially private per window.
  The noise is unbiased (no clamping: a published count may be negative; sums over bins and windows
  stay unbiased and their noise averages out). Nothing is suppressed.
- ``off``: true counts.

The one entry point for any encoder is :func:`protect_bins`; :func:`protect_summary` applies it to
the summary's sections.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

SCHEME = "edge-agent/small-counts/1"


def _protected(cfg: Any) -> dict[str, int]:
    return {c: int(k) for c, k in (cfg.k or {}).items() if int(k) > 1}


def declaration(cfg: Any) -> dict[str, Any]:
    """What a hub is told about the rule applied (the rule only: never which bins it touched)."""
    if cfg is None or cfg.mode == "off":
        return {"scheme": SCHEME, "mode": "off"}
    prot = _protected(cfg)
    if cfg.mode == "dp":
        return {
            "scheme": SCHEME,
            "mode": "dp",
            "mechanism": "laplace",
            "epsilon": cfg.epsilon,
            "sensitivity": 1,
            "scale": round(1.0 / cfg.epsilon, 6),
            "rounded": True,
            "classes": sorted(cfg.k),
            "note": "counts of these classes carry unbiased noise and may be negative; other classes are exact",
        }
    out: dict[str, Any] = {
        "scheme": SCHEME,
        "mode": cfg.mode,
        "k": dict(sorted(prot.items())),
        "absent_means": "0 or below k",
    }
    if cfg.mode == "merge":
        out["merge_class"] = cfg.merge_class
    return out


def protect_bins(
    bins: Iterable[Mapping[str, Any]], cfg: Any, *, rng: np.random.Generator | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Apply small-count protection to a list of count bins.

    Args:
        bins: count bins, each a mapping with ``"class"`` (str) and ``"count"`` (int), plus any keys
            that identify the bin (camera, line, direction, start, ...). Bins with the same other keys
            form a *group*: ``merge`` merges within a group. In ``dp`` mode pass every bin of the domain,
            zeros included (a bin absent only when empty would tell "zero" from "some").
        cfg: a :class:`~agent.privacy.config.SmallCountConfig` (``mode``, ``k``, ``merge_class``,
            ``epsilon``), or ``None`` for no protection.
        rng: randomness for ``dp`` (default: a fresh OS-seeded generator; tests pass a seeded one).

    Returns:
        ``(protected, declaration)``: new bin dicts (the input is not changed) in input order, merged
        bins after the last bin of their group; and the rule's declaration to put in the payload
        (:func:`declaration`).
    """
    items = [dict(b) for b in bins]
    decl = declaration(cfg)
    if cfg is None or cfg.mode == "off":
        return items, decl
    prot = _protected(cfg)
    if cfg.mode == "dp":
        rng = rng if rng is not None else np.random.default_rng()
        dp_classes = set(cfg.k)
        scale = 1.0 / cfg.epsilon
        for b in items:
            if b["class"] in dp_classes:
                b["count"] = int(np.rint(b["count"] + rng.laplace(0.0, scale)))
        return items, decl
    out: list[dict[str, Any]] = []
    pending: dict[tuple, dict[str, Any]] = {}  # group -> merged bin
    last_of_group: dict[tuple, int] = {}
    for i, b in enumerate(items):
        last_of_group[_group(b)] = i
    for i, b in enumerate(items):
        g = _group(b)
        k = prot.get(b["class"], 0)
        if k and b["count"] < k:
            if cfg.mode == "merge" and b["count"] > 0:
                m = pending.setdefault(
                    g, {**{kk: v for kk, v in b.items()}, "class": cfg.merge_class, "count": 0}
                )
                m["count"] += b["count"]
                m["_k"] = min(m.get("_k", k), k)
        else:
            out.append(b)
        if last_of_group[g] == i and g in pending:
            m = pending.pop(g)
            if m["count"] >= m.pop("_k"):
                out.append(m)
    return out, decl


def _objects(v: Mapping[str, Any]) -> int:
    """A label's count in the counts section: distinct objects, or detections before tracking runs."""
    return int(v["objects"] if v.get("objects") is not None else v.get("detections") or 0)


def _group(b: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in b.items() if k not in ("class", "count")))


# -- the summary's sections ------------------------------------------------------------------------


def _volumes_to_bins(cam: str, vols: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"camera": cam, "line": line, "direction": d, "class": cls, "count": n}
        for line, dirs in vols.items()
        for d, classes in dirs.items()
        for cls, n in classes.items()
    ]


def _bins_to_volumes(bins: list[dict[str, Any]]) -> dict[str, Any]:
    vols: dict[str, Any] = {}
    for b in bins:
        vols.setdefault(b["line"], {}).setdefault(b["direction"], {})[b["class"]] = b["count"]
    return vols


def _with_domain(bins: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
    """dp: add explicit zero bins of every protected class to every group present."""
    if cfg is None or cfg.mode != "dp":
        return bins
    groups: dict[tuple, dict[str, Any]] = {}
    have: set[tuple] = set()
    for b in bins:
        g = _group(b)
        groups.setdefault(g, {k: v for k, v in b.items() if k not in ("class", "count")})
        have.add((g, b["class"]))
    out = list(bins)
    for g, keys in groups.items():
        for cls in sorted(cfg.k):
            if (g, cls) not in have:
                out.append({**keys, "class": cls, "count": 0})
    return out


def protect_summary(
    sections: dict[str, Any], cfg: Any, *, rng: np.random.Generator | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Protect the per-class counts of a summary's sections (a deep copy; the input is not changed).

    Covers ``analytics`` (window volumes per line/direction/class, and each completed bin's
    counts) and ``counts`` (per camera and label: detections and distinct objects; a protected label
    is one bin whose count is its objects, or its detections before tracking runs).

    Returns:
        ``(sections, declaration)``.
    """
    out = copy.deepcopy(sections)
    decl = declaration(cfg)
    if cfg is None or cfg.mode == "off":
        return out, decl
    an = out.get("analytics")
    for cam, c in ((an or {}).get("cameras") or {}).items():
        if c.get("volumes"):
            vb, _ = protect_bins(_with_domain(_volumes_to_bins(cam, c["volumes"]), cfg), cfg, rng=rng)
            c["volumes"] = _bins_to_volumes(vb)
        for b in c.get("bins") or []:
            flat = _with_domain(_volumes_to_bins(cam, b.get("counts") or {}), cfg)
            pb, _ = protect_bins(flat, cfg, rng=rng)
            b["counts"] = _bins_to_volumes(pb)
    counts = out.get("counts")
    for cam, c in ((counts or {}).get("cameras") or {}).items():
        labels = c.get("labels") or {}
        flat = [
            {"camera": cam, "class": label, "count": _objects(v)}
            for label, v in labels.items()
            if label in cfg.k
        ]
        if not flat:
            continue
        pb, _ = protect_bins(_with_domain(flat, cfg), cfg, rng=rng)
        new = {label: v for label, v in labels.items() if label not in cfg.k}
        for b in pb:
            cls = b["class"]
            if cls in labels and cfg.mode != "dp":
                new[cls] = labels[cls]  # at or above k: as counted
            elif cfg.mode == "dp":  # the noisy object count; detections (not sensitivity 1) withheld
                new[cls] = {"detections": None, "objects": b["count"]}
            else:  # the merged bin
                merged = [v for lab, v in labels.items() if lab in cfg.k and lab not in new]
                new[cls] = {
                    "detections": sum(v.get("detections") or 0 for v in merged),
                    "objects": b["count"],
                }
        c["labels"] = new
    return out, decl
