"""RRL and cookies as the handler applies them: cached answers count, TCP never limited,
a valid cookie exempts, BADCOOKIE instead of a slip, and cookies never go stale in the
packet cache."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode

from geodns.config import parse_config
from geodns.defences import Defences
from geodns.generation import Generation
from geodns.handler import Handler
from geodns.ops.metrics import Metrics
from geodns.zones.store import build_store, read_zone_dir
from tests.helpers.paths import DATA_DIR, REPO_ROOT
from tests.helpers.wirecheck import dnslib_check

STORE = build_store(read_zone_dir(str(REPO_ROOT / "zones")))
RRL = "[rrl]\nresponses_per_second = 3\nslip = {slip}\n"
SECRET = "[cookies]\nsecret = \"e5e973e5a6b2a43f48e7dc849e37bfcf\"\n"


def handler(config: str, store: object = STORE) -> tuple[Handler, Metrics]:
    metrics = Metrics()
    h = Handler(Generation(store), metrics=metrics)  # type: ignore[arg-type]
    h.guard = Defences.build(parse_config(config, "t.toml"), metrics)
    return h, metrics


def query(name: str = "static.example.com.", qtype: str = "A", cookie: bytes | None = None,
          edns: int = 0, **kw: object) -> bytes:
    options = [dns.edns.GenericOption(10, cookie)] if cookie is not None else []
    return dns.message.make_query(name, qtype, use_edns=edns, options=options,  # type: ignore[arg-type]
                                  **kw).to_wire()


def send(h: Handler, wire: bytes, n: int, client: str = "198.51.100.7",
         tcp: bool = False) -> list[dns.message.Message | None]:
    out = []
    for _ in range(n):
        resp = h.handle(wire, client, tcp)
        out.append(dnslib_check(resp) if resp is not None else None)
    return out


def kinds(msgs: list[dns.message.Message | None]) -> list[str]:
    """'A' answered, 'TC' slipped (truncated, empty), '-' dropped."""
    out = []
    for m in msgs:
        if m is None:
            out.append("-")
        elif m.flags & dns.flags.TC:
            assert not m.answer and not m.authority
            out.append("TC")
        else:
            out.append("A")
    return out


def cookie_of(m: dns.message.Message) -> bytes | None:
    for opt in m.options:
        if opt.otype == 10:
            return opt.to_wire()  # type: ignore[no-any-return]
    return None


def test_off_by_default() -> None:
    assert Defences.build(parse_config("[cookies]\nenabled = false\n", "t.toml")) is None


def test_cached_answers_count_against_the_account() -> None:
    h, m = handler(RRL.format(slip=2) + "[cookies]\nenabled = false\n")
    got = kinds(send(h, query(), 8))
    assert got == ["A"] * 3 + ["-", "TC"] * 2 + ["-"]
    assert h.generation.hits >= 6  # answered from the packet cache, limited all the same
    assert m.rrl == {("dropped", 0): 3, ("slipped", 0): 2}
    sent = sum(n for (t, _, _), n in m.queries.items() if t == "udp")
    assert sent == 5  # dropped responses are not counted as sent


def test_without_the_packet_cache_too() -> None:
    h, _ = handler(RRL.format(slip=0) + "[cookies]\nenabled = false\n")
    got = []
    for _ in range(5):
        for cache in h.generation.packets:
            cache.clear()  # every answer built afresh
        got += kinds(send(h, query(), 1))
    assert got == ["A"] * 3 + ["-"] * 2
    assert h.generation.hits == 0


def test_tcp_is_never_limited_and_other_clients_are_unaffected() -> None:
    h, _ = handler(RRL.format(slip=0))
    send(h, query(), 10)
    assert kinds(send(h, query(), 10, tcp=True)) == ["A"] * 10
    assert kinds(send(h, query(), 3, client="198.51.101.7")) == ["A"] * 3
    assert kinds(send(h, query(), 3, client="2001:db8::7")) == ["A"] * 3


def test_errors_and_nxdomain_are_limited_per_client_and_zone() -> None:
    h, m = handler(RRL.format(slip=0))
    nx = [query(f"r{i}.example.com.") for i in range(6)]
    assert [kinds(send(h, w, 1))[0] for w in nx] == ["A"] * 3 + ["-"] * 3
    refused = [query(f"r{i}.elsewhere.test.") for i in range(5)]
    assert [kinds(send(h, w, 1))[0] for w in refused] == ["A"] * 3 + ["-"] * 2
    formerr = query()[:-3]  # cut inside the OPT record
    assert kinds(send(h, formerr, 1)) == ["-"]  # same error account
    assert m.rrl == {("dropped", 1): 3, ("dropped", 2): 3}


def test_valid_cookie_exempts_from_rrl() -> None:
    h, m = handler(RRL.format(slip=0) + SECRET)
    first = send(h, query(cookie=bytes(range(8))), 1)[0]
    assert first is not None
    full = cookie_of(first)
    assert full is not None and len(full) == 24 and full[:8] == bytes(range(8))
    got = send(h, query(cookie=full), 20)
    assert kinds(got) == ["A"] * 20
    assert all(cookie_of(r) == full for r in got if r is not None)  # fresh: echoed
    assert kinds(send(h, query(cookie=bytes(range(8))), 5))[-1] == "-"  # no server cookie
    assert m.cookies["valid"] == 20 and m.cookies["client_only"] == 6


def test_cookie_client_gets_badcookie_instead_of_a_slip() -> None:
    h, m = handler(RRL.format(slip=1) + SECRET)
    got = send(h, query(cookie=bytes(range(8))), 4)
    assert kinds(got)[:3] == ["A"] * 3
    bad = got[3]
    assert bad is not None and bad.rcode() == dns.rcode.BADCOOKIE and not bad.answer
    retry = cookie_of(bad)
    assert retry is not None and retry[:8] == bytes(range(8)) and len(retry) == 24
    assert kinds(send(h, query(cookie=retry), 3)) == ["A"] * 3  # the retry is exempt
    assert m.cookies["badcookie_sent"] == 1


def test_cookie_answers_stay_out_of_the_packet_cache() -> None:
    h, _ = handler(SECRET)
    wire = query(cookie=bytes(range(8)))
    send(h, wire, 3)
    assert not h.generation.packets[False]
    a = send(h, wire, 1, client="192.0.2.1")[0]
    b = send(h, wire, 1, client="192.0.2.2")[0]
    assert a is not None and b is not None and cookie_of(a) != cookie_of(b)  # per address


def test_cookie_is_added_to_errors_but_not_to_formerr() -> None:
    h, _ = handler(SECRET)
    refused = send(h, query("x.elsewhere.test.", cookie=bytes(8)), 1)[0]
    assert refused is not None and refused.rcode() == dns.rcode.REFUSED
    assert cookie_of(refused) is not None
    badvers = dns.message.make_query("static.example.com.", "A", use_edns=1,
                                     options=[dns.edns.GenericOption(10, bytes(8))])
    msg = send(h, badvers.to_wire(), 1)[0]
    assert msg is not None and msg.rcode() == dns.rcode.BADVERS and cookie_of(msg) is not None
    malformed = send(h, query(cookie=bytes(9)), 1)[0]
    assert malformed is not None and malformed.rcode() == dns.rcode.FORMERR
    assert cookie_of(malformed) is None


def test_cookie_that_overflows_udp_size_truncates() -> None:
    store = build_store(read_zone_dir(str(DATA_DIR / "lookup")))
    h, _ = handler(SECRET, store)
    plain = h.handle(query("big.lookup.test.", "TXT", payload=1232), "192.0.2.1", False)
    assert plain is not None
    size = len(plain)
    # a payload that fits the answer but not the answer plus the 28-byte COOKIE option
    wire = query("big.lookup.test.", "TXT", cookie=bytes(8), payload=size + 8)
    msg = send(h, wire, 1)[0]
    assert msg is not None and msg.flags & dns.flags.TC and cookie_of(msg) is not None
    tcp = send(h, wire, 1, tcp=True)[0]
    assert tcp is not None and not tcp.flags & dns.flags.TC and tcp.answer


def test_rebuild_keeps_the_accounts() -> None:
    config = parse_config(RRL.format(slip=0), "t.toml")
    h, _ = handler(RRL.format(slip=0))
    send(h, query(), 3)
    h.guard = Defences.build(config, None, h.guard)
    assert kinds(send(h, query(), 1)) == ["-"]
    assert Defences.build(parse_config("[cookies]\nenabled = false\n", "t.toml"), None,
                          h.guard) is None
