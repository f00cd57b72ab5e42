"""Overrides consult a guard before new rules apply: refusals change nothing, ``force``
breaks the glass (and the guard is told), removals are never judged."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from geodns.health.override_rules import OverrideRule
from geodns.health.overrides import GuardRefused, Overrides
from geodns.traffic.guards import GuardVerdict, Violation
from tests.health.backends import eventually, run_async

pytestmark = pytest.mark.timeout(60)

POLL = 0.1


class Guard:
    """Refuses any rule set that drains or downs ``fra`` (unless told it is forced)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bool]] = []

    def __call__(self, rules: list[OverrideRule], force: bool) -> GuardVerdict:
        self.calls.append(([r.describe() for r in rules], force))
        bad = [r for r in rules if r.pattern == "fra" and r.state != "up"]
        if not bad:
            return GuardVerdict()
        v = Violation("min_up", "www", None, 2, 2, 1,
                      "min_up 2: pool www predicted 1 POP serving (iad), now 2; down or "
                      "drained: fra")
        return GuardVerdict(forced=(v,)) if force else GuardVerdict(violations=(v,))


def write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_a_refused_file_changes_nothing_and_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="geodns.health")
    path = tmp_path / "admin.state"
    guard = Guard()

    async def main() -> None:
        write(path, "sin drain\n")
        ov = Overrides(path, poll_interval=POLL)
        ov.guard = guard
        await ov.start()
        try:
            assert [r.describe() for r in ov.rules] == ["sin drain"]
            write(path, "sin drain\nfra drain   # the drill\n")
            await eventually(lambda: bool(ov.errors), 2.0)
            assert [r.describe() for r in ov.rules] == ["sin drain"]  # nothing changed
            assert ov.errors[0] == (f"{path}: refused (nothing changed): min_up 2: pool www "
                                    "predicted 1 POP serving (iad), now 2; down or drained: "
                                    "fra")
            assert "end the line with 'force'" in ov.errors[1]
            # break glass: the same line marked force applies, and the guard is told
            write(path, "sin drain\nfra drain force  # the drill, approved\n")
            await eventually(lambda: len(ov.rules) == 2, 2.0)
            assert ov.errors == [] and ov.rules[1].force
            assert guard.calls[-2] == (["sin drain"], False)  # the change without it
            assert guard.calls[-1][1] is True  # then all of it, forced
            # removing rules is never judged
            calls = len(guard.calls)
            write(path, "")
            await eventually(lambda: ov.rules == [], 2.0)
            assert len(guard.calls) == calls
        finally:
            await ov.stop()

    run_async(main())
    logged = [r.getMessage() for r in caplog.records]
    assert any("refused (nothing changed): min_up 2" in m for m in logged)


@pytest.mark.parametrize("with_file", [False, True])
def test_api_refusal_and_force(tmp_path: Path, with_file: bool) -> None:
    path = tmp_path / "admin.state" if with_file else None
    guard = Guard()

    async def main() -> None:
        ov = Overrides(path, poll_interval=POLL)
        ov.guard = guard
        await ov.start()
        try:
            await ov.set_override("sin", "drain")
            with pytest.raises(GuardRefused) as info:
                await ov.set_override("fra", "down", "+30m")
            assert info.value.problems == [
                "min_up 2: pool www predicted 1 POP serving (iad), now 2; down or drained: fra"]
            assert [r.pattern for r in ov.rules] == ["sin"]
            if path is not None:
                assert path.read_text() == "sin drain\n"  # not written
            calls = len(guard.calls)
            rule = await ov.set_override("fra", "down", "+30m", force=True)
            assert rule.force and [r.pattern for r in ov.rules] == ["sin", "fra"]
            # judged once, without then with the forced rule (not again when re-read)
            assert [c[1] for c in guard.calls[calls:]] == [False, True]
            if path is not None:
                assert path.read_text().splitlines()[-1].endswith(" force")
            assert await ov.clear_override("fra")
            # a dry run: the rules an edit would leave, applied nowhere
            proposed = ov.proposed("fra", "drain")
            assert [r.describe() for r in proposed] == ["sin drain", "fra drain"]
            assert [r.pattern for r in ov.rules] == ["sin"]
        finally:
            await ov.stop()

    run_async(main())
