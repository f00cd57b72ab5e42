"""geodns primary -> geodns secondary: the steered (DYNA) names answer the same on
both for the same clients (ECS), before and after a zone edit, because the DYNA
records travel with the zone and both nodes share the pools of one config."""

from __future__ import annotations

import shutil
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import pytest

from tests.helpers.paths import REPO_ROOT
from tests.helpers.queries import ask, make_query
from tests.xfr.servers import KEY, free_port, geodns, serial, tsig_toml, wait_until, write

pytestmark = pytest.mark.timeout(90)

ORIGIN = "example.com."
CLIENTS = ["81.2.69.0/24", "2.125.160.0/24", "89.160.20.0/24", "216.160.83.0/24",
           "175.16.199.0/24", "202.196.224.0/24", "1.1.1.0/24", "2001:218::/32",
           "2a02:ff80::/32"]
NAMES = ["www.example.com.", "api.example.com.", "static.example.com.", "docs.example.com."]


def _ecs(client: str) -> dns.edns.ECSOption:
    address, prefix = client.split("/")
    return dns.edns.ECSOption(address, int(prefix))


def _answers(port: int, name: str, qtype: str, client: str) -> tuple[str, list[str], int]:
    m = ask(port, make_query(name, qtype, edns=0, options=[_ecs(client)]))
    scope = next((o.scopelen for o in m.options if isinstance(o, dns.edns.ECSOption)), -1)
    return (dns.rcode.to_text(m.rcode()),
            sorted(line for r in m.answer for line in r.to_text().splitlines()), scope)


def _same_everywhere(primary: int, secondary: int) -> int:
    checked = 0
    for name in NAMES:
        for qtype in ("A", "AAAA"):
            for client in CLIENTS:
                ours = _answers(primary, name, qtype, client)
                assert ours[0] == "NOERROR"
                assert _answers(secondary, name, qtype, client) == ours, (name, qtype, client)
                checked += 1
    # without ECS the source address decides: both see 127.0.0.1
    for name in NAMES:
        q = make_query(name, "A")
        assert ask(secondary, q).answer == ask(primary, q).answer
    return checked


def test_steered_names_answer_the_same_on_primary_and_secondary(tmp_path: Path) -> None:
    shipped = (REPO_ROOT / "geodns.toml").read_text()
    zones = tmp_path / "primary" / "zones"
    zones.mkdir(parents=True)
    zonefile = zones / "example.com.zone"
    shutil.copy(REPO_ROOT / "zones" / "example.com.zone", zonefile)
    pport, sport = free_port(), free_port()
    primary_conf = f"""{shipped}
{tsig_toml()}
[transfer]
allow = ["127.0.0.0/8"]
key = "{KEY}"
notify = ["127.0.0.1:{sport}"]
"""
    secondary_conf = f"""{shipped}
{tsig_toml()}
[secondary."{ORIGIN}"]
primaries = ["127.0.0.1:{pport}"]
key = "{KEY}"
"""
    with geodns(primary_conf, zones, pport, workdir=tmp_path / "primary",
                ready_name=ORIGIN) as p, \
            geodns(secondary_conf, None, sport, workdir=tmp_path / "secondary") as s:
        first = serial(p.port, ORIGIN)
        wait_until(lambda: serial(s.port, ORIGIN) == first, 10)
        assert _same_everywhere(p.port, s.port) == len(NAMES) * 2 * len(CLIENTS)

        # An edit on the primary: the pool behind www changes, a name is added.
        text = zonefile.read_text().replace(f"{first} ; serial", f"{first + 1} ; serial")
        text = text.replace("www  300  IN  DYNA  www", "www  300  IN  DYNA  api")
        write(zonefile, text + "new IN A 192.0.2.201\n")
        wait_until(lambda: serial(s.port, ORIGIN) == first + 1, 10)
        assert _answers(s.port, "new.example.com.", "A", CLIENTS[0])[1] == [
            "new.example.com. 3600 IN A 192.0.2.201"]
        _same_everywhere(p.port, s.port)
        assert "IXFR from 127.0.0.1" in s.stderr_text()
        # The copy the secondary keeps is an ordinary zone file with the DYNA records.
        copy = (tmp_path / "secondary" / "xfr-state" / "secondary" / "example.com.zone")
        assert "www.example.com. 300 IN DYNA api" in copy.read_text()
