"""Benchmarks: ``cxcr4score bench speed|accuracy|concordance`` (one module per kind)."""

from __future__ import annotations

import json

import pandas as pd

from . import accuracy as accuracy_bench
from . import concordance as concordance_bench
from . import speed as speed_bench


def main(args):
    """Run a benchmark from parsed command-line arguments; print a table."""
    if args.kind == "speed":
        result = speed_bench.speed(size=args.size, repeats=args.repeats)
        table = pd.DataFrame(result["stages"]).T
        print(f"speed on a {args.size}^2 tile ({result['mpix']:.1f} Mpix), 1 thread, median of {args.repeats}:")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    elif args.kind == "concordance":
        result = concordance_bench.run(args.truth, args.results)
        print(concordance_bench.format_report(result))
    else:
        result = accuracy_bench.accuracy(tiles=args.tiles, size=args.size)
        table = result
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        print("mean:", result.drop(columns=["tile"]).mean().round(3).to_dict())
        result = {"tiles": result.to_dict(orient="records")}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0
