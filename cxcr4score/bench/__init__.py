"""Benchmarks: ``cxcr4score bench speed|accuracy`` (one module per kind)."""

from __future__ import annotations

import json
import sys

from . import accuracy as accuracy_bench
from . import speed as speed_bench


def main(args):
    """Run a benchmark from parsed command-line arguments; print a table."""
    if args.kind == "speed":
        size = args.size or 4096
        try:
            result = speed_bench.speed(size=size, repeats=args.repeats, threads=args.threads)
        except speed_bench.NeedsSourceCheckout as err:
            print(f"cxcr4score bench speed: {err}", file=sys.stderr)
            return 2
        print(speed_bench.format_report(result))
    else:
        result = accuracy_bench.accuracy(tiles=args.tiles, size=args.size or 2048)
        table = result
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        print("mean:", result.drop(columns=["tile"]).mean().round(3).to_dict())
        result = {"tiles": result.to_dict(orient="records")}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0
