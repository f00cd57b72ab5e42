"""Result tables, geodns/reference ratios and the PASS/FAIL verdict of each target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchlib.procs import OTHER_LOAD_WARN


@dataclass(frozen=True)
class Target:
    """``num``'s qps divided by ``den``'s, in the same run; ``minimum`` None: reported
    only. A target passes when the ratio reaches it and ``num`` lost no query."""

    num: str
    den: str
    minimum: float | None

    @property
    def label(self) -> str:
        return f"{self.num}/{self.den}"


RESULT_COLS = (
    ("server", 10),
    ("qps", 9),
    ("avg lat ms", 10),
    ("max lat ms", 10),
    ("lost", 14),
    ("srv cpu%", 8),
    ("perf cpu%", 9),
    ("other%", 6),
    ("qps/cpu", 8),
    ("rss MB", 7),
)


def summarize(result: dict[str, Any]) -> None:
    """Put the best round (highest qps) at the top level of ``result``: other
    processes on the machine can only lower a server's throughput."""
    result.update(max(result["rounds"], key=lambda r: r["qps"]))
    result["qps_rounds"] = [r["qps"] for r in result["rounds"]]


def print_table(results: list[dict[str, Any]], failed: dict[str, str]) -> None:
    def row(cells: list[str]) -> str:
        return "  ".join(
            f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
            for i, (c, (_, w)) in enumerate(zip(cells, RESULT_COLS, strict=True))
        )

    print("\n" + row([name for name, _ in RESULT_COLS]))
    for r in results:
        cells = [
            r["server"],
            f"{r['qps']:.0f}",
            f"{r['avg_latency_ms']:.3f}",
            f"{r['max_latency_ms']:.1f}",
            f"{r['lost']} ({r['lost_pct']:.1f}%)",
            f"{r['server_cpu_pct']:.0f}",
            f"{r['client_cpu_pct']:.0f}",
            f"{r['other_cpu_pct']:.0f}",
            f"{per_cpu(r):.0f}",
            f"{r.get('rss_mb', 0):.0f}",
        ]
        print(row(cells))
    for name, why in failed.items():
        print(f"{name:<10}  FAILED: {why.splitlines()[0]}")
    if any(len(r["rounds"]) > 1 for r in results):
        for r in results:
            print(f"{r['server']}: qps per round {', '.join(f'{q:.0f}' for q in r['qps_rounds'])}")
    for r in results:
        if r.get("input_exhausted"):
            print(
                f"warning: {r['server']} used up the query file after {r['runtime_s']:.1f} s: "
                "its run was shorter than --duration (raise --max-qps)"
            )


def ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    """geodns (every geodns variant) against every other server of the run."""
    out: dict[str, Any] = {}
    by_name = {r["server"]: r for r in results}
    for g in (r for r in results if r["server"].startswith("geodns")):
        for name, r in by_name.items():
            if name.startswith("geodns") or not r["qps"]:
                continue
            key = f"{g['server']}/{name}"
            out[key] = {
                "qps": g["qps"] / r["qps"],
                "avg_latency": g["avg_latency_ms"] / max(r["avg_latency_ms"], 1e-9),
            }
            print(
                f"ratio {key}: qps {out[key]['qps']:.3f}, "
                f"avg latency {out[key]['avg_latency']:.2f}x"
            )
    return out


def per_cpu(result: dict[str, Any]) -> float:
    """Answers per CPU second of the server: the qps it would reach on a whole core of
    its own, a steadier figure than qps when other processes share the machine or when
    dnsperf, not the server, is the bottleneck."""
    return float(result["qps"]) / max(result["server_cpu_pct"] / 100.0, 1e-9)


def evaluate(targets: list[Target], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target's ratio and verdict, printed as ``PASS``/``FAIL`` beside it."""
    by_name = {r["server"]: r for r in results}
    verdicts = []
    for t in targets:
        num, den = by_name.get(t.num), by_name.get(t.den)
        entry: dict[str, Any] = {"target": t.label, "minimum": t.minimum}
        if num is None or den is None or not den["qps"]:
            entry.update(ratio=None, verdict="n/a", why="not run")
        else:
            ratio = num["qps"] / den["qps"]
            lost = int(num["lost"])
            why = []
            if t.minimum is not None and ratio < t.minimum:
                why.append(f"ratio below {t.minimum:g}")
            if lost:
                why.append(f"{t.num} lost {lost} queries")
            verdict = "-" if t.minimum is None else ("FAIL" if why else "PASS")
            noisy = max(num["other_cpu_pct"], den["other_cpu_pct"])
            if t.minimum is not None and noisy > OTHER_LOAD_WARN:
                why.append(f"noisy: other processes used up to {noisy:.0f} % of a core")
            entry.update(
                ratio=ratio,
                cpu_ratio=per_cpu(num) / max(per_cpu(den), 1e-9),
                lost=lost,
                verdict=verdict,
                why="; ".join(why),
            )
        verdicts.append(entry)
        goal = f"target >= {t.minimum:g}" if t.minimum is not None else "no target"
        ratio_text = f"{entry['ratio']:.3f}" if entry["ratio"] is not None else "-"
        lost_text = f", {t.num} lost {entry['lost']}" if "lost" in entry else ""
        if "cpu_ratio" in entry:
            lost_text += f", per server CPU second {entry['cpu_ratio']:.3f}"
        why_text = f" ({entry['why']})" if entry.get("why") else ""
        print(
            f"  {t.label:<24} qps ratio {ratio_text:>6} ({goal}{lost_text}): "
            f"{entry['verdict']}{why_text}"
        )
    return verdicts
