import math

import pytest

from routing.config.durations import FOREVER, parse_duration, ttl_seconds


@pytest.mark.parametrize("value, seconds", [
    (300, 300.0), (1.5, 1.5), (0, 0.0), ("0", 0.0), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0),
    ("1.5h", 5400.0), ("500ms", 0.5), ("300", 300.0), (-1, FOREVER), ("-1m", FOREVER), ("-1", FOREVER),
    (-1e300, FOREVER), ("2562047h", 2562047 * 3600.0), (9.2e9, 9.2e9),
])
def test_it_parses_ollama_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "1d", "", True, None, [1], {"s": 1}, float("nan"),
                                   1e300, "99999999999999999999h", "1e300", "inf", 9.3e9, "2562048h"])
def test_it_rejects_what_is_not_a_duration(value):
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("seconds, ttl", [(0.2, 1), (0, 1), (59.5, 60), (600, 600), (math.inf, None)])
def test_ttl_is_whole_seconds_at_least_one_or_none_for_forever(seconds, ttl):
    assert ttl_seconds(seconds) == ttl
