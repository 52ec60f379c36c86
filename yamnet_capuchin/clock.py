"""Recorder clock time and site: when each recording started, and where.

A start time comes from the first of these that the file has:

1. GUANO metadata (``Timestamp``, read with the ``guano`` package; WAV files);
2. an AudioMoth header comment, ``Recorded at 19:00:00 24/12/2019 (UTC-3) by AudioMoth
   24526B065D325E0C ...`` (WAV ``ICMT``, read through libsndfile);
3. the file name: AudioMoth's ``YYYYMMDD_HHMMSS``, Song Meter's ``PREFIX_YYYYMMDD_HHMMSS``
   (Raven's default template ``_<yyyy><ll><dd>_<hh><mm><ss>.``), AudioMoth's older
   8-hex-digit UNIX time (``5E0B2F1C.WAV``), or a ``strptime`` pattern of your own
   (:func:`pattern_regex`).

Every time is timezone-aware. Metadata carries its offset; a file name does not, so ``tz``
says which zone names are written in (AudioMoth writes UTC unless set to local time; Song
Meters write local time). A GUANO timestamp without an offset is local time by the GUANO
specification and is read in ``local_tz``. A local time that a daylight-saving change makes
ambiguous is read as the first of the two (``fold=0``).

The site of a recording (``site_from``): ``"folder"``, the parent folder's name (one folder per
recorder, the common layout); ``"metadata"``, the recorder's serial number (GUANO ``Serial``
or the AudioMoth ID), else the folder; ``"none"``, no site.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

SITE_FROM = ("folder", "metadata", "none")
NAME_TIME = ("utc", "local")  # the zone file-name times are written in: UTC, or the site's
UTC = dt.timezone.utc
# YYYYMMDD, a separator, HHMMSS; not inside a longer run of digits
_NAME_TIME = re.compile(r"(?<!\d)(\d{8})[_T-](\d{6})(?!\d)")
_HEX_NAME = re.compile(r"^[0-9A-Fa-f]{8}$")
_AUDIOMOTH = re.compile(
    r"Recorded at (\d{2}):(\d{2}):(\d{2}) (\d{2})/(\d{2})/(\d{4}) \(UTC(?:([+-])(\d{1,2})(?::(\d{2}))?)?\)"
    r"(?: by AudioMoth ([0-9A-Fa-f]{16}))?")
_STRPTIME_FIELDS = {"Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}", "M": r"\d{2}",
                    "S": r"\d{2}", "j": r"\d{3}", "f": r"\d{1,6}", "%": "%"}


@dataclass(frozen=True)
class RecordingClock:
    """When and where one recording was made.

    start: timezone-aware start time, or None where nothing gave one; source: ``"guano"``,
    ``"audiomoth"``, ``"name"`` or ``""``; site: its site (``""``: none); serial: the
    recorder's serial number, where the metadata gives it; note: why metadata was not used
    (a corrupt GUANO chunk, say), else ``""``."""

    start: dt.datetime | None
    source: str
    site: str
    serial: str = ""
    note: str = ""


def parse_timezone(text: str | None) -> dt.tzinfo:
    """``"UTC"`` (also ``""``/None/``"Z"``), a fixed offset ``"+05:30"`` / ``"-3"``, or an IANA
    name such as ``"America/Manaus"``; :class:`ConfigError` otherwise."""
    text = (text or "UTC").strip()
    if text.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = re.fullmatch(r"(?:UTC)?([+-])(\d{1,2})(?::?(\d{2}))?", text)
    if m:
        hours, minutes = int(m.group(2)), int(m.group(3) or 0)
        if hours > 14 or minutes >= 60:
            raise ConfigError(f"time zone '{text}': offset out of range")
        sign = 1 if m.group(1) == "+" else -1
        return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"time zone '{text}': unknown (an IANA name such as America/Manaus, "
                          "UTC, or an offset such as -04:00)") from None


def pattern_regex(pattern: str) -> re.Pattern:
    """A regex that finds a ``strptime`` ``pattern`` (``%Y %y %m %d %H %M %S %j %f``, the
    rest literal) anywhere in a name, e.g. ``"REC%y%m%d-%H%M"``."""
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "%":
            field = pattern[i + 1: i + 2]
            if field not in _STRPTIME_FIELDS:
                raise ConfigError(f"--time-pattern '{pattern}': %{field} is not supported "
                                  f"(use %{', %'.join(k for k in _STRPTIME_FIELDS if k != '%')})")
            out.append(_STRPTIME_FIELDS[field])
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def localize(naive: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """``naive`` read as a wall-clock time in ``tz`` (ambiguous times: the first, ``fold=0``)."""
    return naive.replace(tzinfo=tz, fold=0)


def time_from_name(name: str, pattern: str | None = None, tz: dt.tzinfo = UTC) -> dt.datetime | None:
    """The start time written in a file name (see the module docstring), in ``tz``; None
    where the name holds none, or holds an impossible date."""
    stem = Path(name).stem
    try:
        if pattern:
            m = pattern_regex(pattern).search(stem)
            return localize(dt.datetime.strptime(m.group(0), pattern), tz) if m else None
        m = _NAME_TIME.search(stem)
        if m:
            return localize(dt.datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S"), tz)
        if _HEX_NAME.match(stem):  # AudioMoth firmware before 1.3: UNIX seconds in hex, UTC
            return dt.datetime.fromtimestamp(int(stem, 16), UTC)
    except (ValueError, OverflowError):
        return None
    return None


def audiomoth_comment_time(comment: str) -> tuple[dt.datetime | None, str]:
    """(start time, AudioMoth serial) from an AudioMoth header comment; (None, "") if it is
    not one."""
    m = _AUDIOMOTH.search(comment or "")
    if not m:
        return None, ""
    hh, mm, ss, day, month, year, sign, off_h, off_m, serial = m.groups()
    offset = dt.timedelta(hours=int(off_h or 0), minutes=int(off_m or 0)) * (-1 if sign == "-" else 1)
    try:
        start = dt.datetime(int(year), int(month), int(day), int(hh), int(mm), int(ss), tzinfo=dt.timezone(offset))
    except ValueError:
        return None, ""
    return start, (serial or "").upper()


def guano_metadata(path: Path, tz: dt.tzinfo = UTC) -> tuple[dt.datetime | None, str]:
    """(``Timestamp``, ``Serial``) of a WAV file's GUANO chunk; (None, "") without one. Raises
    ValueError for a chunk that cannot be read."""
    import guano

    try:
        meta = guano.GuanoFile(str(path))
    except ValueError as exc:
        if "no guano" in str(exc).lower() or "not a wav" in str(exc).lower():
            return None, ""
        raise
    except Exception as exc:  # a truncated or garbled chunk: the caller falls back to the name
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    if not meta:
        return None, ""
    stamp = meta.get("Timestamp")
    if not isinstance(stamp, dt.datetime):
        raise ValueError("a GUANO chunk without a readable Timestamp")
    if stamp.tzinfo is None:
        stamp = localize(stamp, tz)
    else:  # guano's own tzinfo class does not pickle (Beam ships results between workers)
        stamp = stamp.astimezone(dt.timezone(stamp.utcoffset()))
    return stamp, str(meta.get("Serial") or "")


def _wav_comment(path: Path) -> str:
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as fh:
            return fh.comment or ""
    except (RuntimeError, OSError, TypeError, sf.LibsndfileError):
        return ""


def recording_clock(path: str | Path, site_from: str = "folder", pattern: str | None = None,
                    tz: dt.tzinfo = UTC, named_as: str | Path | None = None,
                    local_tz: dt.tzinfo | None = None) -> RecordingClock:
    """When and where ``path`` was recorded (see the module docstring). Never raises for a
    file's content: a corrupt GUANO chunk falls back to the next source, with a ``note``.
    ``named_as``: the name and folder to read a time and site from, where ``path`` is a local
    copy (default: ``path``; a remote ``gs://`` name works: only its last two parts are read).
    ``tz``: the zone of times in names; ``local_tz``: the site's zone (default ``tz``)."""
    if site_from not in SITE_FROM:
        raise ConfigError(f"--site-from '{site_from}': one of {', '.join(SITE_FROM)}")
    path = Path(path)
    start, source, serial, note = None, "", "", ""
    if path.suffix.lower() == ".wav" and path.is_file():
        try:
            start, serial = guano_metadata(path, local_tz or tz)
            source = "guano" if start else ""
        except (ValueError, OSError) as exc:
            note = f"GUANO metadata unreadable ({str(exc)[:120]}); time taken from the next source"
            start, serial = None, ""
        if start is None:
            moth, moth_serial = audiomoth_comment_time(_wav_comment(path))
            serial = serial or moth_serial
            if moth is not None:
                start, source = moth, "audiomoth"
    name = path if named_as is None else Path(str(named_as).rstrip("/"))
    if "://" not in str(named_as or ""):
        name = name.absolute()  # "x.wav": the working folder is its folder
    if start is None:
        start = time_from_name(name.name, pattern, tz)
        source = "name" if start else ""
    folder = name.parent.name
    site = {"folder": folder, "metadata": serial or folder, "none": ""}[site_from]
    return RecordingClock(start, source, site, serial, note)


def iso(moment: dt.datetime | None) -> str:
    """ISO 8601 with the UTC offset and milliseconds (``2024-03-01T05:30:00.000-04:00``), or ""."""
    return moment.isoformat(timespec="milliseconds") if moment is not None else ""
