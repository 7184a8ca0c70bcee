"""Durations as Ollama writes them: seconds as numbers, or Go duration strings ("90s", "1h30m")."""
from __future__ import annotations

import math
import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_WHOLE = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")

FOREVER = math.inf
# Go's largest time.Duration (2^63-1 ns, about 292 years): Ollama cannot take a longer one, and a
# larger number would not fit the integers LM Studio's `ttl` and the JSON writer take.
MAX_SECONDS = (2**63 - 1) / 1e9


def parse_duration(value: object) -> float:
    """Seconds for a number or Go-style duration string; negative means forever (`math.inf`).

    Raises ValueError with a readable message for anything else (booleans included).
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_go_duration(value.strip())
    else:
        raise ValueError(f"not a duration: {value!r}")
    if math.isnan(seconds):
        raise ValueError(f"not a duration: {value!r}")
    if seconds < 0:
        return FOREVER
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration out of range: {value!r} (at most {MAX_SECONDS:.0f} seconds; "
                         f"a negative value means forever)")
    return seconds


def _parse_go_duration(text: str) -> float:
    if text in ("0", "+0", "-0"):
        return 0.0
    if not _WHOLE.fullmatch(text):
        try:  # Ollama also accepts a number sent as a string ("300")
            return float(text)
        except ValueError:
            raise ValueError(
                f"not a duration: {text!r} (use seconds or a Go duration like '90s', '10m', '1h30m')"
            ) from None
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * sum(float(num) * _UNITS[unit] for num, unit in _PART.findall(text))


def ttl_seconds(seconds: float) -> int | None:
    """LM Studio's `ttl` (whole seconds, at least 1) for a duration; None for forever."""
    if seconds == FOREVER:
        return None
    return max(1, math.ceil(seconds))


def format_duration(seconds: int) -> str:
    """A whole number of seconds as a Go duration (`5400` -> `"1h30m"`), readable and re-parseable."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"
