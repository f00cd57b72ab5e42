"""Refusals strangers can cause are logged once per kind per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from geodns.xfr.logs import Quiet


def test_one_line_per_kind_per_interval(caplog: pytest.LogCaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("geodns.xfr.logs.time.monotonic", lambda: now[0])
    q = Quiet(logging.getLogger("t"), every=10)
    with caplog.at_level(logging.WARNING):
        for i in range(50):
            q.warning("a", "refused %d", i)
        q.warning("b", "other kind")
        now[0] += 10
        q.warning("a", "refused %d", 99)
    assert caplog.messages == ["refused 0", "other kind",
                               "refused 99 (49 more like it in the last 10 s not logged)"]
