"""Identity figures of a validation run: fragments and ID switches, from the matched crossings of
truth that names its objects (``object`` on each crossing; see docs/validation.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.analytics.validate import DirectionReport


def identity(reports: list[DirectionReport]) -> dict[str, Any] | None:
    """Identity figures from the matched crossings, when the truth names its objects (``object``,
    the same name on every line an object crosses); ``None`` when it names none.

    - ``fragments``: for each object, the tracks beyond the first that counted its crossings (its
      track broke, or its identity passed to another track between two lines);
    - ``id_switches``: for each track, the objects beyond the first whose crossings it counted (it
      jumped from one object to another).

    Only matched crossings take part, so an object counted on one line only cannot show either.
    """
    by_obj: dict[str, set[int]] = {}
    by_track: dict[int, set[str]] = {}
    named = False
    for rep in reports:
        named = named or any(t.obj for t in rep.missed + rep.optional_events + [t for t, _ in rep.matches])
        for t, c in rep.matches:
            if t.obj is None or c.track is None:
                continue
            by_obj.setdefault(t.obj, set()).add(c.track)
            by_track.setdefault(c.track, set()).add(t.obj)
    if not named:
        return None
    return {
        "objects": len(by_obj),
        "tracks": len(by_track),
        "fragments": sum(len(v) - 1 for v in by_obj.values()),
        "id_switches": sum(len(v) - 1 for v in by_track.values()),
        "split_objects": sorted(k for k, v in by_obj.items() if len(v) > 1),
        "switched_tracks": sorted(k for k, v in by_track.items() if len(v) > 1),
    }
