#!/usr/bin/env python3
"""Synthetic raw latency samples for timing ``geodns latency-map`` (README figures).

Regions of contiguous client /24s in 10.0.0.0/8 share a base rtt per POP; every sample
adds Gaussian noise (sd 1.5 ms) and 2% are outliers (+200..2000 ms), like beacons.
Default: 80 regions x 250 /24s x 3 POPs x 17 samples = 1,020,000 rows.

    python3 tools/latency_raw.py /tmp/raw-1m.csv
    time geodns latency-map --input /tmp/raw-1m.csv --output /tmp/map.csv
"""

from __future__ import annotations

import argparse
import random


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output")
    p.add_argument("--regions", type=int, default=80)
    p.add_argument("--prefixes", type=int, default=250, help="/24s per region (max 256)")
    p.add_argument("--samples", type=int, default=17, help="per (/24, POP)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    pops = ("fra", "iad", "sin")
    with open(args.output, "w", encoding="utf-8") as out:
        out.write("client_ip,pop,rtt_ms\n")
        for region in range(args.regions):
            base = {pop: rng.uniform(5, 250) for pop in pops}
            for j in range(min(args.prefixes, 256)):
                a, b = divmod(region * 256 + j, 256)
                for pop in pops:
                    for k in range(args.samples):
                        rtt = base[pop] + rng.gauss(0, 1.5)
                        if rng.random() < 0.02:
                            rtt += rng.uniform(200, 2000)
                        out.write(f"10.{a}.{b}.{1 + k % 50},{pop},{max(rtt, 0.1):.1f}\n")


if __name__ == "__main__":
    main()
