"""Finding the line of any key path in TOML text."""

from __future__ import annotations

import textwrap

from geodns.config import (
    TomlLocator,
)


def test_locator_finds_every_kind_of_key() -> None:
    text = textwrap.dedent('''\
        # comment [not.a.table]
        top = "x # not a comment"
        [a]
        b.c = 1
        "quoted.key" = { x = 1, y = [1,
          2] }
        s = """multi
        line [fake]
        """
        lit = \'\'\'also
        multi\'\'\'
        arr = [
          { k = 1 },  # c
          "two",
        ]
        [[aot]]
        v = 1
        [[aot]]
        v = 2
        [a.deep."x y"]
        z = 3
    ''')
    loc = TomlLocator(text)
    assert loc.line(("top",)) == 2
    assert loc.line(("a",)) == 3
    assert loc.line(("a", "b", "c")) == 4
    assert loc.line(("a", "quoted.key", "y", 1)) == 6
    assert loc.line(("a", "s")) == 7
    assert loc.line(("a", "lit")) == 10
    assert loc.line(("a", "arr", 0, "k")) == 13
    assert loc.line(("a", "arr", 1)) == 14
    assert loc.line(("aot", 1, "v")) == 19
    assert loc.line(("a", "deep", "x y", "z")) == 21
    assert loc.line(("a", "missing")) == 3  # falls back to the table
    assert loc.line(("nothing",)) == 1
