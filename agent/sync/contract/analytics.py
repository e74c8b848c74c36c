"""The summary's ``analytics`` section: per camera, line volumes, bins, zones, speeds and forecasts."""

from __future__ import annotations

from agent.sync.contract.fields import INT0, arr, counts_by_class, f, mapof, obj, pct_obj, ts


def forecast_horizon() -> dict:
    """One horizon of a line direction's latest forecast, with its rolling backtest error."""
    return obj(
        "One horizon of the latest forecast.",
        {
            "horizon_min": f("integer", "Horizon.", "min", **INT0),
            "from": ts("Start of the forecast period"),
            "to": ts("End of the forecast period"),
            "expected": f("number", "Expected vehicles in the period.", "vehicles"),
            "backtest": obj(
                "Rolling backtest error of this horizon.",
                {
                    "mae": f(
                        "number", "Mean absolute error; null before enough history.", "vehicles", null=True
                    ),
                    "mape": f(
                        "number",
                        "Mean absolute percentage error; null before enough history.",
                        "%",
                        null=True,
                    ),
                    "n": f("integer", "Forecasts scored.", "forecasts", null=True, **INT0),
                },
            ),
        },
    )


def bin_zones() -> dict:
    """A bin's zone figures (since 2.1.0)."""
    return mapof(
        "Zone figures of the bin (since 2.1.0; only for cameras with zones).",
        obj(
            "One zone in the bin.",
            {
                "peak": f("integer", "Most objects at once.", "objects", **INT0),
                "entries": f("integer", "Objects that entered.", "objects", **INT0),
                "occupancy_mean": f(
                    "number",
                    "Mean objects in the zone over the observed part of the bin; null without observed time.",
                    "objects",
                    null=True,
                    minimum=0,
                ),
            },
        ),
        "zone",
    )


def count_bin() -> dict:
    """One committed count bin: its start, length, coverage, counts, revision and zones."""
    return obj(
        "One bin.",
        {
            "start": ts("Bin start"),
            "minutes": f("integer", "Bin length.", "min", minimum=1),
            "coverage": f(
                "number",
                "Fraction of the bin the camera was counting (0..1; <1 after a restart or outage).",
                "fraction",
                minimum=0,
                maximum=1,
            ),
            "counts": counts_by_class("Vehicles per line, direction and class (a class with 0 is left out)."),
            "rev": f(
                "integer",
                "Revision of this bin on the unit (since 2.1.0): grows each time the bin changes;"
                " a higher rev replaces the whole bin (all its counts and zones) of a lower one.",
                minimum=1,
            ),
            "late": f(
                "boolean",
                "The bin ended before window.start (since 2.1.0): it amends an earlier window"
                " (committed after that window's summary was built, or changed since).",
            ),
            "zones": bin_zones(),
        },
        optional=("rev", "late", "zones"),
    )


def window_zones() -> dict:
    """Per zone, the figures of the zone bins starting in the window and the dwell times."""
    return mapof(
        "Per zone.",
        obj(
            "One zone.",
            {
                "peak": f(
                    "integer",
                    "Most objects at once in a zone bin starting in the window.",
                    "objects",
                    **INT0,
                ),
                "entries": f(
                    "integer",
                    "Objects that entered (zone bins starting in the window).",
                    "objects",
                    **INT0,
                ),
                "dwell_s": pct_obj("Dwell time of the objects that left in the window.", "s"),
            },
            optional=("peak", "entries", "dwell_s"),
        ),
        "zone",
    )


def analytics_camera() -> dict:
    """One camera's analytics (never boxes or images)."""
    return obj(
        "One camera's analytics (never boxes or images).",
        {
            "volumes": counts_by_class(
                "Line crossings in the window: {line: {direction: {class: vehicles}}}."
            ),
            "bins": arr(
                "Bins (bin_minutes long, aligned to UTC midnight) committed or changed since the previous summary,"
                " whatever window they belong to: each carries its own start and length. A bin is re-sent whole,"
                " with a higher rev, whenever it changes (a crossing resolved late, a restart continuing it);"
                " a hub keeps, per unit, camera and bin start, the version with the highest rev (docs/mqtt.md,"
                " late and re-sent bins).",
                count_bin(),
            ),
            "zones": window_zones(),
            "speeds": mapof(
                "Speeds of the tracks measured in the window, by source (zone:NAME or segment:NAME).",
                pct_obj("One source.", "km/h", "p50_kmh", "p85_kmh"),
                "source",
            ),
            "forecasts": mapof(
                "Latest forecast per line and direction.",
                mapof("Per direction.", arr("Horizons.", forecast_horizon()), "direction"),
                "line",
            ),
        },
    )


def analytics_section() -> dict:
    return obj(
        "Traffic analytics per camera.", {"cameras": mapof("Per camera.", analytics_camera(), "camera")}
    )
