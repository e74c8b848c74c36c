"""Capacity model for 10k and 100k units from the costs fleet_sim.py measured (docs/fleet.md).

    .venv/bin/python benchmarks/capacity.py fleet.json [--units 10000 100000]

Measured (from the JSON): CPU seconds per 1,000 messages of the hub workers, PostgreSQL and the broker;
payload bytes of summaries and health messages; bytes PostgreSQL stores per message (table + indexes)
and per volume row. Assumed (the agent's defaults, stated in the output): one summary and one health
message a minute, ten events a day, a hub sized to drain a one-hour city-wide outage in a quarter of an
hour, 8 volume rows per 15-minute bin (one line, two directions, four classes), raw JSON kept 90 days,
15-minute volumes and AQI kept for years. Everything it prints beyond the measured inputs is
extrapolated.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

PER_DAY = {"summary": 1440, "health": 1440, "event": 10}
WIRE_OVERHEAD_B = (
    220  # MQTT header + topic (~40 B), TLS record (29 B), TCP/IP and its ACK (~80 B), PUBACK (~73 B)
)
RAW_DAYS = 90
BIN_ROWS_PER_DAY = 96 * 8


def model(m: dict, units: int) -> dict:
    k = m["cpu_s_per_1k_msgs"]
    sizes = {kind: v["avg_bytes"] for kind, v in m["payload_bytes"].items()}
    msgs_day = sum(PER_DAY.values())
    avg_rate = units * msgs_day / 86400
    drain_rate = (
        avg_rate + units * 120 / 900
    )  # a 1 h backlog (120 msgs/unit) drained in 15 min, on top of live
    bytes_day = sum(n * (sizes.get(kind, 600) + WIRE_OVERHEAD_B) for kind, n in PER_DAY.items())
    stored_msg = m["stored_bytes"]["messages"] / max(1, m["ingested_msgs"])
    vol_rows = max(
        1, m["ingested_msgs"] * 8 * 0.8
    )  # 8 window rows per summary, ~80 % of messages are summaries
    stored_vol = m["stored_bytes"]["volumes"] / vol_rows
    return {
        "units": units,
        "avg_msgs_per_s": avg_rate,
        "sized_msgs_per_s": drain_rate,
        "hub_worker_cores": drain_rate * k["hub workers"] / 1000,
        "postgres_cores": drain_rate * k["postgresql"] / 1000,
        "broker_cores_mosquitto_equiv": drain_rate * 2 * k["broker"] / 1000,  # in and out
        "network_mb_per_unit_day": bytes_day / 1e6,
        "raw_tb": units * msgs_day * RAW_DAYS * stored_msg / 1e12,
        "bins_tb_per_year": units * BIN_ROWS_PER_DAY * 365 * stored_vol / 1e12,
        "raw_tb_per_year_if_kept": units * msgs_day * 365 * stored_msg / 1e12,
        "stored_bytes_per_msg": stored_msg,
        "stored_bytes_per_volume_row": stored_vol,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json")
    ap.add_argument("--units", type=int, nargs="+", default=[10_000, 100_000])
    ns = ap.parse_args()
    m = json.loads(Path(ns.json).read_text())
    print(
        f"measured ({m['units']} units): CPU s per 1k msgs {m['cpu_s_per_1k_msgs']}, payload bytes "
        f"{ {k: v['avg_bytes'] for k, v in m['payload_bytes'].items()} }"
    )
    for u in ns.units:
        r = model(m, u)
        print(
            f"{u:>7} units: {r['avg_msgs_per_s']:,.0f} msgs/s average, sized for {r['sized_msgs_per_s']:,.0f}; "
            f"hub workers {math.ceil(r['hub_worker_cores'])} cores ({r['hub_worker_cores']:.1f}), PostgreSQL "
            f"{math.ceil(r['postgres_cores'])} cores ({r['postgres_cores']:.1f}), broker (mosquitto-equivalent) "
            f"{r['broker_cores_mosquitto_equiv']:.1f} cores; network {r['network_mb_per_unit_day']:.1f} MB/unit/day; "
            f"storage: raw JSON {RAW_DAYS} d {r['raw_tb']:.1f} TB ({r['raw_tb_per_year_if_kept']:.1f} TB/year if kept), "
            f"15-min volumes {r['bins_tb_per_year']:.2f} TB/year "
            f"({r['stored_bytes_per_msg']:.0f} B/message, {r['stored_bytes_per_volume_row']:.0f} B/volume row)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
