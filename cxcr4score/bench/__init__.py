"""Benchmarks: ``cxcr4score bench speed|accuracy|concordance|real|slide|merge`` (one module per kind)."""

from __future__ import annotations

import json
import sys


from .. import config as cx_config
from .. import synthetic_cohort
from . import accuracy as accuracy_bench
from . import concordance as concordance_bench
from . import merge as merge_bench
from . import real as real_bench
from . import slide as slide_bench
from . import speed as speed_bench


def main(args):
    """Run a benchmark from parsed command-line arguments; print a table."""
    if args.kind == "speed":
        try:
            result = speed_bench.speed(size=args.size, repeats=args.repeats, threads=args.threads)
        except speed_bench.NeedsSourceCheckout as err:
            print(f"cxcr4score bench speed: {err}", file=sys.stderr)
            return 2
        print(speed_bench.format_report(result))
    elif args.kind == "slide":
        try:
            result = slide_bench.slide_bench(size=args.size, cores=args.threads, workdir=args.workdir)
        except (speed_bench.NeedsSourceCheckout, slide_bench.WorkflowFailed) as err:
            print(f"cxcr4score bench slide: {err}", file=sys.stderr)
            return 2
        print(slide_bench.format_report(result))
    elif args.kind == "merge":
        try:
            result = merge_bench.merge_bench(cells=args.cells, workdir=args.workdir)
        except (speed_bench.NeedsSourceCheckout, merge_bench.StageFailed) as err:
            print(f"cxcr4score bench merge: {err}", file=sys.stderr)
            return 2
        print(merge_bench.format_report(result))
    elif args.kind == "concordance":
        result = concordance_bench.run(args.truth, args.results)
        print(concordance_bench.format_report(result))
    elif args.kind == "real":
        result = real_bench.main(args, cx_config.from_file(args.config))
        print(real_bench.format_report(result))
    else:
        result = _accuracy(args)
        if result is None:
            return 2
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def _accuracy(args):
    """Run the accuracy benchmark, print its table and the held-out verdicts.

    Returns the JSON payload, or None (after an error message) for an unknown configuration.
    """
    configs = args.configs.split(",") if args.configs else None
    unknown = sorted(set(configs or ()) - set(synthetic_cohort.CONFIGURATIONS))
    if unknown:
        print(f"error: unknown generator configuration(s) {', '.join(unknown)}; "
              f"known: {', '.join(synthetic_cohort.CONFIGURATIONS)}", file=sys.stderr)
        return None
    table, patients = accuracy_bench.accuracy(
        patients=args.patients, tiles_per_patient=args.tiles, size=args.size, configs=configs,
        progress=lambda message: print(message, file=sys.stderr, flush=True))
    shown = table.assign(held_out=table["held_out"].map({True: "<- held out", False: ""}))
    print(f"accuracy: {args.patients} patients x {args.tiles} tiles of {args.size}^2 px (0.5 um/px field) "
          "per configuration, default config, tumour cells matched within 4 um:")
    print(shown.set_index("config").to_string(float_format=lambda v: f"{v:.3f}"))
    payload = {"table": table.to_dict(orient="records"), "patients": patients.to_dict(orient="records")}
    held = table[table["held_out"]]
    if len(held):
        verdicts = accuracy_bench.judge(held.iloc[0])
        print("held-out targets: " + ", ".join(
            f"{column} {value:.3g} {op} {bound:g} {verdict}"
            for (column, op, bound), (value, verdict) in zip(accuracy_bench.TARGETS, verdicts.values())))
        payload["targets"] = {column: verdict for column, (_, verdict) in verdicts.items()}
    return payload
