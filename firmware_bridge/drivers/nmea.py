"""NMEA 0183 GPS receivers (default 9600 8N1): GGA, RMC and GSA, with checksums.

A sentence is ``$`` + address (talker + type, e.g. ``GPGGA``, ``GNRMC``) + ``,``-separated fields
+ ``*HH`` (XOR of every character between ``$`` and ``*``, two hex digits) + CR LF, at most 82
characters. Sentences without a checksum are rejected. u-blox binary (UBX: ``0xB5 0x62``, class,
id, little-endian length, payload, 2-byte Fletcher checksum) interleaved on the same line is
recognised and skipped whole; any other byte outside a sentence is garbage.

GGA gives fix quality (0 none, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 estimated, ...),
satellites used, HDOP, position and altitude; RMC gives validity (A/V), UTC date and time, speed
and course; GSA gives the fix type (1 none, 2 2D, 3 3D) and PDOP/HDOP/VDOP.
"""

from __future__ import annotations

import datetime as dt
import math

from pydantic import Field

from firmware_bridge.drivers.base import DeviceModel, Driver, SensorConfig
from firmware_bridge.events import Q_NO_FIX, Measurement, Message

MAX_SENTENCE = 100  # the standard says 82; leave room for receivers that exceed it
MAX_UBX_PAYLOAD = 1024
UBX_SYNC = b"\xb5\x62"
KNOT_MPS = 1852.0 / 3600.0


def checksum(body: str | bytes) -> int:
    """XOR of the characters between ``$`` and ``*``."""
    data = body.encode("ascii") if isinstance(body, str) else body
    c = 0
    for b in data:
        c ^= b
    return c


def sentence(body: str) -> bytes:
    """``$body*HH\\r\\n`` (for the simulator and tests)."""
    return f"${body}*{checksum(body):02X}\r\n".encode("ascii")


def ubx_frame(cls: int, mid: int, payload: bytes) -> bytes:
    """A UBX frame with its checksum (the simulator interleaves these)."""
    body = bytes([cls, mid, len(payload) & 0xFF, len(payload) >> 8]) + payload
    a = b = 0
    for x in body:
        a = (a + x) & 0xFF
        b = (b + a) & 0xFF
    return UBX_SYNC + body + bytes([a, b])


def _coord(value: str, hemi: str, degree_digits: int) -> float | None:
    if not value or hemi not in ("N", "S", "E", "W"):
        return None
    deg = int(value[:degree_digits])
    minutes = float(value[degree_digits:])  # NaN fails the range check below
    if not 0 <= minutes < 60 or not value[:degree_digits].isdigit():
        raise ValueError("minutes out of range")
    v = deg + minutes / 60.0
    return -v if hemi in ("S", "W") else v


def _float(s: str) -> float | None:
    if not s:
        return None
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(f"{s!r} is not a finite number")
    return v


def _utc_time(s: str) -> dt.time | None:
    if len(s) < 6:
        return None
    sec = float(s[4:])
    us = int(round((sec - int(sec)) * 1e6))
    return dt.time(int(s[0:2]), int(s[2:4]), int(sec), min(us, 999999))


class NmeaModel(DeviceModel):
    lat, lon = 48.1173, 11.5167

    def tick(self) -> bytes:
        now = dt.datetime.now(dt.timezone.utc)
        hms = now.strftime("%H%M%S") + f".{now.microsecond // 10000:02d}"
        lat = self.lat + self.rng.uniform(-1e-5, 1e-5)
        lon = self.lon + self.rng.uniform(-1e-5, 1e-5)
        la = f"{int(lat):02d}{(lat % 1) * 60:07.4f},N"
        lo = f"{int(lon):03d}{(lon % 1) * 60:07.4f},E"
        sats = self.rng.randint(7, 11)
        out = sentence(f"GNGGA,{hms},{la},{lo},1,{sats:02d},0.9,545.4,M,46.9,M,,")
        out += sentence(f"GNRMC,{hms},A,{la},{lo},0.02,,{now.strftime('%d%m%y')},,,A")
        out += sentence("GNGSA,A,3,04,05,,09,12,,,24,,,,,1.8,0.9,1.5")
        if self.rng.random() < 0.3:  # a UBX NAV message interleaved on the same line
            out += ubx_frame(0x01, 0x07, bytes(self.rng.getrandbits(8) for _ in range(92)))
        return out


class NmeaConfig(SensorConfig):
    """``driver = "nmea"`` (a GPS receiver)."""

    clock_tolerance_s: float = Field(
        2.0,
        gt=0,
        description="The system clock is trusted when it is within this many seconds of GPS time.",
    )


class Nmea(Driver):
    name = "nmea"
    default_baud = 9600
    description = "NMEA 0183 GPS (GGA, RMC, GSA; UBX binary skipped)"
    max_buffer = 8 + MAX_UBX_PAYLOAD + 8
    Config = NmeaConfig
    simulator = NmeaModel
    gps_clock = True

    def _leftover_reason(self) -> str:
        return "truncated"

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            d, u = buf.find(b"$"), buf.find(UBX_SYNC)
            starts = [x for x in (d, u) if x >= 0]
            if not starts:
                self._skip(len(buf) - (1 if buf[-1] == 0xB5 else 0))
                return
            i = min(starts)
            self._skip(i)
            if buf[0] == 0xB5:
                if not self._ubx():
                    return
                continue
            end = buf.find(b"\n", 1, MAX_SENTENCE + 2)
            nxt = buf.find(b"$", 1, end if end > 0 else MAX_SENTENCE + 2)
            if 0 < nxt and (end < 0 or nxt < end):
                self._error("truncated", nxt, "a new sentence started before the end of line")
                self._consume(nxt)
                continue
            if end < 0:
                if len(buf) > MAX_SENTENCE + 1:
                    self._error("too_long", MAX_SENTENCE, f"no end of line within {MAX_SENTENCE} bytes")
                    self._consume(1)
                    continue
                return
            self._sentence(bytes(buf[: end + 1]))
            self._consume(end + 1)

    def _ubx(self) -> bool:
        """Skip a whole UBX frame at the buffer start. False: need more bytes."""
        buf = self._buf
        if len(buf) < 6:
            return False
        n = buf[4] | buf[5] << 8
        if n > MAX_UBX_PAYLOAD:
            self._skip(2)
            return True
        if len(buf) < 8 + n:
            return False
        a = b = 0
        for x in buf[2 : 6 + n]:
            a = (a + x) & 0xFF
            b = (b + a) & 0xFF
        if buf[6 + n] != a or buf[7 + n] != b:
            self._error("bad_checksum", 8 + n, "UBX frame")
            self._consume(2)
            return True
        self._emit(Message("ubx", self._base, {"class": buf[2], "id": buf[3], "length": n}))
        self._consume(8 + n)
        return True

    def _sentence(self, raw: bytes) -> None:
        line = raw.rstrip(b"\r\n")
        if any(c < 0x20 or c > 0x7E for c in line):
            self._error("bad_frame", len(raw), "non-ASCII byte in sentence")
            return
        text = line.decode("ascii")
        star = text.rfind("*")
        if star < 0 or len(text) - star != 3:
            self._error("no_checksum", len(raw))
            return
        try:
            want = int(text[star + 1 :], 16)
        except ValueError:
            self._error("bad_checksum", len(raw), "checksum is not hex")
            return
        body = text[1:star]
        if checksum(body) != want:
            self._error("bad_checksum", len(raw), f"*{want:02X} != {checksum(body):02X}")
            return
        parts = body.split(",")
        addr = parts[0]
        talker, kind = (addr[:2], addr[2:]) if not addr.startswith("P") else ("P", addr[1:])
        handler = {"GGA": self._gga, "RMC": self._rmc, "GSA": self._gsa, "GLL": self._gll}.get(kind)
        if handler is None:
            self._emit(Message(kind.lower() or "unknown", self._base, {"talker": talker}))
            return
        try:
            fields, ms = handler(parts)
        except (ValueError, IndexError) as exc:
            self._error("bad_fields", len(raw), f"{addr}: {exc}")
            return
        self._emit(Message(kind.lower(), self._base, {"talker": talker, **fields}, ms))

    def _gga(self, p: list[str]) -> tuple[dict, list[Measurement]]:
        t = _utc_time(p[1])
        lat, lon = _coord(p[2], p[3], 2), _coord(p[4], p[5], 3)
        q = int(p[6] or 0)
        sats = int(p[7]) if p[7] else 0
        hdop, alt = _float(p[8]), _float(p[9])
        flag = Q_NO_FIX if q == 0 else 0
        ms = [
            Measurement("gps_fix_quality", float(q), "code"),
            Measurement("gps_satellites", float(sats), "count", flag),
        ]
        if hdop is not None:
            ms.append(Measurement("gps_hdop", hdop, "", flag))
        if lat is not None and lon is not None:
            ms += [Measurement("latitude", lat, "deg", flag), Measurement("longitude", lon, "deg", flag)]
        if alt is not None:
            ms.append(Measurement("altitude", alt, "m", flag))
        fields = {
            "time": t.isoformat() if t else None,
            "fix_quality": q,
            "satellites": sats,
            "hdop": hdop,
            "lat": lat,
            "lon": lon,
            "altitude_m": alt,
        }
        return fields, ms

    def _rmc(self, p: list[str]) -> tuple[dict, list[Measurement]]:
        t = _utc_time(p[1])
        valid = p[2] == "A"
        lat, lon = _coord(p[3], p[4], 2), _coord(p[5], p[6], 3)
        sog, cog = _float(p[7]), _float(p[8])
        d = p[9]
        utc = None
        if t and len(d) == 6:
            yy = int(d[4:6])
            date = dt.date(2000 + yy if yy < 80 else 1900 + yy, int(d[2:4]), int(d[0:2]))
            utc = dt.datetime.combine(date, t, tzinfo=dt.timezone.utc)
        flag = 0 if valid else Q_NO_FIX
        ms = []
        if sog is not None:
            ms.append(Measurement("gps_speed", round(sog * KNOT_MPS, 3), "m/s", flag))
        if cog is not None:
            ms.append(Measurement("gps_course", cog, "deg", flag))
        fields = {
            "valid": valid,
            "utc": utc.isoformat().replace("+00:00", "Z") if utc else None,
            "lat": lat,
            "lon": lon,
            "speed_knots": sog,
            "course_deg": cog,
        }
        return fields, ms

    def _gll(self, p: list[str]) -> tuple[dict, list[Measurement]]:
        """``$xxGLL,lat,N|S,lon,E|W,hhmmss.ss,A|V[,mode]``: a position with its time and status."""
        lat, lon = _coord(p[1], p[2], 2), _coord(p[3], p[4], 3)
        t = _utc_time(p[5]) if len(p) > 5 else None
        valid = len(p) > 6 and p[6] == "A" and (len(p) < 8 or p[7] != "N")  # mode N: data not valid
        flag = 0 if valid else Q_NO_FIX
        ms = []
        if lat is not None and lon is not None:
            ms += [Measurement("latitude", lat, "deg", flag), Measurement("longitude", lon, "deg", flag)]
        fields = {"time": t.isoformat() if t else None, "valid": valid, "lat": lat, "lon": lon}
        return fields, ms

    def _gsa(self, p: list[str]) -> tuple[dict, list[Measurement]]:
        fix = int(p[2] or 1)
        prns = [int(x) for x in p[3:15] if x]
        pdop, hdop, vdop = _float(p[15]), _float(p[16]), _float(p[17])
        flag = Q_NO_FIX if fix < 2 else 0
        ms = [Measurement("gps_fix_type", float(fix), "code")]
        for name, v in (("gps_pdop", pdop), ("gps_vdop", vdop)):
            if v is not None:
                ms.append(Measurement(name, v, "", flag))
        fields = {
            "mode": p[1],
            "fix_type": fix,
            "satellites_used": prns,
            "pdop": pdop,
            "hdop": hdop,
            "vdop": vdop,
        }
        return fields, ms
