"""Load feed payloads: JSON, CSV and Prometheus responses, every problem located."""

from __future__ import annotations

import textwrap

import pytest

from geodns.traffic.feed_parse import (
    FeedData,
    FeedError,
    parse_csv_loads,
    parse_json_loads,
    parse_prometheus,
    parse_time,
)

T0 = 1767225600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(("text", "values", "timestamp"), [
    ('{"fra": 812.5, "iad": 1203}', {"fra": 812.5, "iad": 1203.0}, None),
    ('{"fra": "812.5"}', {"fra": 812.5}, None),
    ('{"timestamp": 1767225600, "loads": {"fra": 0}}', {"fra": 0.0}, T0),
    ('{"timestamp": "2026-01-01T00:00:00Z", "loads": {"fra": 1}}', {"fra": 1.0}, T0),
    ('{"loads": {"fra": 1}}', {"fra": 1.0}, None),
])
def test_json_good(text: str, values: dict[str, float], timestamp: float | None) -> None:
    data = parse_json_loads(text, "loads.json")
    assert dict(data.values) == values and data.timestamp == timestamp


@pytest.mark.parametrize(("text", "problems"), [
    ('{"fra": 1,\n "iad": }', ["loads.json:2: invalid JSON: Expecting value"]),
    ("[1, 2]", ["loads.json:1: expected a JSON object of POP loads, got list"]),
    ("{}", ["loads.json:1: no loads in the document"]),
    ('{\n"fra": 1,\n"iad": "busy"\n}', ["loads.json:3: iad: 'busy' is not a number"]),
    ('{\n"fra": -1,\n"iad": true\n}', ["loads.json:2: fra: -1 must be a finite number >= 0",
                                       "loads.json:3: iad: expected a number, got bool"]),
    ('{"fra": null}', ["loads.json:1: fra: expected a number, got NoneType"]),
    ('{\n"loads": [1],\n"timestamp": "yesterday"\n}',
     ["loads.json:2: \"loads\" must be an object of POP loads",
      "loads.json:3: timestamp: 'yesterday' is not a Unix time or ISO 8601 time"]),
    ('{"loads": {"fra": 1},\n"time": 5}',
     ["loads.json:2: unknown key 'time' beside \"loads\" (only \"timestamp\" may be there)"]),
    ('{"timestamp": "2026-01-01T00:00:00", "loads": {"fra": 1}}',
     ["loads.json:1: timestamp: '2026-01-01T00:00:00' has no time zone (e.g. "
      "2026-01-31T12:00:00Z)"]),
])
def test_json_problems(text: str, problems: list[str]) -> None:
    with pytest.raises(FeedError) as info:
        parse_json_loads(text, "loads.json")
    assert info.value.problems == problems


def test_csv_good() -> None:
    text = textwrap.dedent("""\
        # written by the load exporter
        pop,load,time
        fra,812.5,1767225600
        iad, 1203 ,2026-01-01T00:00:30Z

        sin,7
        """)
    data = parse_csv_loads(text, "loads.csv")
    assert data == FeedData({"fra": 812.5, "iad": 1203.0, "sin": 7.0}, None,
                            {"fra": T0, "iad": T0 + 30})
    assert data.time_of("fra", 5.0) == T0 and data.time_of("sin", 5.0) == 5.0


@pytest.mark.parametrize(("text", "problems"), [
    ("fra,1\nfra,2\n", ["loads.csv:2: duplicate POP 'fra' (first at line 1)"]),
    ("fra\n", ["loads.csv:1: expected 2 or 3 fields (pop,load[,time]), got 1"]),
    ("fra,1,2,3\n", ["loads.csv:1: expected 2 or 3 fields (pop,load[,time]), got 4"]),
    (",1\n", ["loads.csv:1: empty POP name"]),
    ("pop,load\nfra,lots\n", ["loads.csv:2: fra: 'lots' is not a number"]),
    ("fra,inf\n", ["loads.csv:1: fra: 'inf' must be a finite number >= 0"]),
    ("fra,1,noon\n", ["loads.csv:1: fra: 'noon' is not a Unix time or ISO 8601 time"]),
    ("# nothing\n", ["loads.csv:0: no loads in the file"]),
])
def test_csv_problems(text: str, problems: list[str]) -> None:
    with pytest.raises(FeedError) as info:
        parse_csv_loads(text, "loads.csv")
    assert info.value.problems == problems


def vector(*samples: tuple[dict[str, str], float, str]) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": m, "value": [t, v]} for m, t, v in samples]}}


def test_prometheus_good() -> None:
    doc = vector(({"site": "fra", "job": "edge"}, T0 + 0.5, "812.5"),
                 ({"site": "iad"}, T0, "0"))
    data = parse_prometheus(doc, "site", "http://127.0.0.1:9090/api/v1/query")
    assert dict(data.values) == {"fra": 812.5, "iad": 0.0}
    assert dict(data.timestamps) == {"fra": T0 + 0.5, "iad": T0}


URL = "http://127.0.0.1:9090/api/v1/query"


@pytest.mark.parametrize(("doc", "problems"), [
    ({"status": "error", "errorType": "bad_data", "error": "parse error at char 4"},
     [f"{URL}:1: Prometheus query failed: bad_data: parse error at char 4"]),
    ({"status": "success", "data": {"resultType": "matrix", "result": []}},
     [f"{URL}:1: the query returned a matrix, not an instant vector (one sample per POP)"]),
    ({"status": "success", "data": {"resultType": "scalar", "result": [T0, "1"]}},
     [f"{URL}:1: the query returned a scalar, not an instant vector (one sample per POP)"]),
    ({"status": "success"}, [f"{URL}:1: not a Prometheus API response (no data.result)"]),
    ([1], [f"{URL}:1: not a Prometheus API response"]),
    (vector(), [f"{URL}:1: the query returned no samples"]),
    (vector(({"job": "edge", "instance": "a"}, T0, "1")),
     [f"{URL}:1: result[0] {{instance=\"a\", job=\"edge\"}} has no 'pop' label (aggregate "
      "with: sum by (pop) (...))"]),
    (vector(({"pop": "fra"}, T0, "1"), ({"pop": "fra", "x": "y"}, T0, "2")),
     [f"{URL}:1: two samples for pop='fra' (aggregate with: sum by (pop) (...))"]),
    (vector(({"pop": "fra"}, T0, "NaN")), [f"{URL}:1: pop=fra: 'NaN' must be a finite number "
                                           ">= 0"]),
    (vector(({"pop": "fra"}, T0, "+Inf")), [f"{URL}:1: pop=fra: '+Inf' must be a finite "
                                            "number >= 0"]),
])
def test_prometheus_problems(doc: object, problems: list[str]) -> None:
    with pytest.raises(FeedError) as info:
        parse_prometheus(doc, "pop", URL)
    assert info.value.problems == problems


@pytest.mark.parametrize(("value", "expected"), [
    (T0, T0), (int(T0), T0), ("1767225600.5", T0 + 0.5), ("2026-01-01T01:00:00+01:00", T0),
])
def test_parse_time(value: object, expected: float) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize("value", [True, -1, float("nan"), "soon", None, "2026-01-01"])
def test_parse_time_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_time(value)
