"""Console entry points: ``cxcr4score score | synth | calibrate | bench``.

A thin shell over the package: ``score`` runs the same per-slide stages as the Snakemake
workflow (:func:`cxcr4score.pipeline.score_slide`) without Snakemake.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import INTENDED_USE, __version__


def get_arg_parser():
    """The ``cxcr4score`` argument parser (kept apart so documentation can render it)."""
    parser = argparse.ArgumentParser(prog="cxcr4score", description=f"CXCR4 IHC scoring. {INTENDED_USE}")
    parser.add_argument("--version", action="version", version=f"cxcr4score {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    score = commands.add_parser("score", help="score images without Snakemake (one summary line per image)")
    score.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    score.add_argument("--out", required=True, type=Path, metavar="DIR", help="results folder")
    score.add_argument("--mpp", type=float, metavar="UM", help="pixel size when the image metadata has none")
    score.add_argument("--config", type=Path, metavar="YAML", help="configuration overrides (keys of config/config.yaml)")

    synth = commands.add_parser("synth", help="write synthetic CXCR4 tiles with per-cell truth")
    synth.add_argument("--out", required=True, type=Path, metavar="DIR")
    synth.add_argument("--cohort", action="store_true", help="write the demo cohort (sample_slides layout) instead")
    synth.add_argument("-n", "--count", type=int, default=1, metavar="N", help="tiles to write [%(default)s]")
    synth.add_argument("--size", type=int, default=1024, metavar="PIXELS", help="tile side [%(default)s]")
    synth.add_argument("--mpp", type=float, default=0.5, metavar="UM", help="pixel size [%(default)s]")
    synth.add_argument("--positive-fraction", type=float, default=0.3, metavar="F",
                       help="fraction of CXCR4-positive tumour cells [%(default)s]")
    synth.add_argument("--seed", type=int, default=0, help="first seed [%(default)s]")
    synth.add_argument("--jpeg-quality", type=int, metavar="Q", help="JPEG quality (default: lossless deflate)")
    synth.add_argument("--config-name", metavar="NAME",
                       help="tiles of a named generator configuration (patient k of its cohort, seed from the "
                            "configuration; --size is then the side at 0.5 um/px and the configuration sets "
                            "pixel size, positive fraction and JPEG quality)")

    calibrate = commands.add_parser(
        "calibrate", help="fit the thresholds to a pathologist's scores (cross-validated) and write a calibration record")
    calibrate.add_argument("--truth", required=True, type=Path, metavar="FILE",
                           help="pathologist scores: patient_id (or slide_id) and h_score, pct_positive or ihc_score")
    calibrate.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                           help="results folder of the scored slides [%(default)s]")
    calibrate.add_argument("--out", required=True, type=Path, metavar="YAML", help="calibration record to write")
    calibrate.add_argument("--unit", choices=("patient", "slide"), default="patient",
                           help="what the pathologist scored; slides of a patient share a fold [%(default)s]")
    calibrate.add_argument("--measure", choices=("h_score", "pct_positive", "ihc_score"),
                           help="the score to fit when the file gives several")
    calibrate.add_argument("--folds", type=int, default=5, metavar="K", help="cross-validation folds [%(default)s]")
    calibrate.add_argument("--score-share", type=float, default=10.0, metavar="PCT",
                           help="ihc_score: a class counts when more than this %% of tumour cells reach it "
                                "[%(default)s, HER2 ASCO/CAP]")
    calibrate.add_argument("--json", type=Path, metavar="FILE", help="also write the record as JSON")

    bench = commands.add_parser("bench", help="speed, accuracy, concordance, real-image, whole-slide and merge-memory "
                                              "benchmarks")
    bench.add_argument("kind", choices=("speed", "accuracy", "concordance", "real", "slide", "merge"))
    bench.add_argument("--size", type=int, metavar="PIXELS",
                       help="tile side [speed 4096; accuracy 1024, at 0.5 um/px]; "
                            "slide: level-0 side of the generated slide [32768, at 0.25 um/px]")
    bench.add_argument("--repeats", type=int, default=3, metavar="N", help="speed: timing repeats (median) [%(default)s]")
    bench.add_argument("--threads", "--cores", type=int, default=1, metavar="N",
                       help="speed: also time our stages at N threads (speed-up per stage); "
                            "slide: snakemake --cores [%(default)s]")
    bench.add_argument("--tiles", type=int, default=2, metavar="N", help="accuracy: tiles per patient [%(default)s]")
    bench.add_argument("--patients", type=int, default=6, metavar="N",
                       help="accuracy: patients per generator configuration [%(default)s]")
    bench.add_argument("--configs", metavar="A,B",
                       help="accuracy: generator configurations (default all; held_out is judged on the targets)")
    bench.add_argument("--truth", type=Path, metavar="FILE",
                       help="concordance: pathologist scores (patient_id; h_score, pct_positive, call)")
    bench.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                       help="concordance: workflow results folder with eligibility.csv [%(default)s]")
    bench.add_argument("--slides", type=Path, metavar="SHEET",
                       help="real: sample sheet or folder of the slides to score (a column ihc_score marks scored cores)")
    bench.add_argument("--points", type=Path, metavar="FILE",
                       help="real: pathologist's points, a CSV (slide_id, x, y, label) or a folder of QuPath "
                            "GeoJSON files {slide_id}.geojson")
    bench.add_argument("--config", type=Path, metavar="YAML", help="real: configuration overrides")
    bench.add_argument("--out", type=Path, metavar="DIR", help="real: write QC pictures and matched points here")
    bench.add_argument("--workdir", type=Path, metavar="DIR",
                       help="slide: cache of the generated slide and the workflow's temporary folder; "
                            "merge: also the kept workflow run and the dense chunk set "
                            "[~/.cache/cxcr4score/bench_slide]")
    bench.add_argument("--cells", type=int, default=2_000_000, metavar="N",
                       help="merge: cells of the dense slide whose merge, GeoJSON and QC are measured [%(default)s]")
    bench.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    return parser


def _summary_line(row):
    text = f"{row['slide_id']}: {row['n_cells']:,} cells"
    if row["n_cells"]:
        text += (f", pct_positive {row['pct_positive']:.1f}% "
                 f"(95% CI {row['pct_positive_ci_low']:.1f}-{row['pct_positive_ci_high']:.1f}), "
                 f"H-score {row['h_score']:.0f}")
    return text + f", QC {row['qc_status']}" + (f" ({row['qc_message']})" if row["qc_message"] else "")


def run_score(args):
    """``cxcr4score score``: score each image; a bad image is reported and the rest go on."""
    import pandas as pd
    from tqdm import tqdm

    from . import config as cx_config
    from . import pipeline, qc, runtime
    from .errors import InputError
    from .sheets import image_stem, sanitise_id
    from .tables import PART_ROWS, write_table, write_yaml

    runtime.keep_freed_memory()
    config = cx_config.from_file(args.config)
    out = args.out
    slide_ids = [sanitise_id(image_stem(path)) for path in args.images]
    seen = {}
    clashes = [f"{path} and {seen[sid]} would both be slide {sid!r}"
               for sid, path in zip(slide_ids, args.images) if seen.setdefault(sid, path) != path]
    clashes += [f"{path}: listed more than once (each image is scored once)"
                for path in sorted({p for p in args.images if args.images.count(p) > 1})]
    if clashes:
        raise InputError(clashes)
    rows, blocks, failed = [], [], 0
    for path, slide_id in zip(args.images, slide_ids):
        # A bar of the slide's tiles on a terminal; nothing extra in a pipe or a log file.
        with tqdm(desc=slide_id, unit="tile", leave=False, disable=not sys.stderr.isatty()) as bar:
            def on_chunk(done, total, bar=bar):
                bar.total = total
                bar.update(done - bar.n)

            try:
                info, cells, block_table, summary = pipeline.score_slide(
                    path, slide_id=slide_id, patient_id=slide_id,
                    sheet_mpp="" if args.mpp is None else str(args.mpp), config=config, on_chunk=on_chunk,
                )
            except InputError as err:
                bar.close()
                print(f"error: {err}", file=sys.stderr)
                failed += 1
                continue
        write_table(cells, out / "cells" / f"{slide_id}.parquet", part_rows=PART_ROWS)  # as the workflow writes it
        qc.write_png(pipeline.qc_slide(info, summary, cells, config=config), out / "qc" / f"{slide_id}.png")
        rows.append(summary)
        blocks.append(block_table)
    if not rows:
        return 1
    write_yaml(config, out / "config.effective.yaml")
    slides = pd.DataFrame(rows)
    slides["collected"] = ""
    table = pipeline.slides_table(slides, pd.concat(blocks, ignore_index=True), config)
    write_table(table, out / "slides.csv")
    for _, row in table.iterrows():
        print(_summary_line(row))
    return 1 if failed else 0


def run_synth(args):
    """``cxcr4score synth``: synthetic tiles with truth, or the demo cohort."""
    from . import synthetic

    if args.cohort:
        expected = synthetic.write_demo_cohort(args.out)
        print(f"wrote the demo cohort to {args.out} ({len(expected)} patients)")
        return 0
    if args.config_name:
        return _synth_configuration(args)
    args.out.mkdir(parents=True, exist_ok=True)
    side_um = args.size * args.mpp
    spec = synthetic.TileSpec(size_um=(side_um, side_um), mpp=args.mpp, positive_fraction=args.positive_fraction)
    for k in range(args.count):
        tile = synthetic.generate_tile(spec, seed=args.seed + k)
        path = args.out / f"synthetic_{args.seed + k:04d}.tif"
        synthetic.write_tile(tile, path, jpeg_quality=args.jpeg_quality)
        print(f"{path}: {len(tile.truth)} cells")
    return 0


_BENCH_SIZE = {"speed": 4096, "accuracy": 1024, "slide": 32768}


def _synth_configuration(args):
    """``cxcr4score synth --config-name``: one tile per patient of a named configuration."""
    from . import synthetic, synthetic_cohort

    if args.config_name not in synthetic_cohort.CONFIGURATIONS:
        print(f"error: unknown generator configuration {args.config_name!r}; "
              f"known: {', '.join(synthetic_cohort.CONFIGURATIONS)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    slides = synthetic_cohort.cohort(args.config_name, patients=args.count, size_um=args.size * 0.5)
    for slide in slides:
        tile = synthetic.generate_tile(slide.spec, seed=slide.seed)
        path = synthetic.write_tile(tile, args.out / f"{slide.slide_id}.tif", jpeg_quality=slide.jpeg_quality)
        print(f"{path}: {len(tile.truth)} cells, {slide.spec.mpp} um/px, JPEG quality {slide.jpeg_quality}")
    return 0


def run_calibrate(args):
    """``cxcr4score calibrate``: see :mod:`cxcr4score.calibrate_command`."""
    import json

    from . import calibrate_command

    if args.folds < 2:
        print("error: --folds must be at least 2", file=sys.stderr)
        return 2
    record = calibrate_command.main(args)
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    return 0


def run_bench(args):
    """``cxcr4score bench``: see :mod:`cxcr4score.bench`."""
    from . import bench

    if args.size is None:
        args.size = _BENCH_SIZE.get(args.kind)
    return bench.main(args)


def main(argv=None):
    """Entry point of the ``cxcr4score`` console script."""
    from .config import ConfigError
    from .errors import InputError

    args = get_arg_parser().parse_args(argv)
    print(INTENDED_USE, file=sys.stderr)
    runner = {"score": run_score, "synth": run_synth, "calibrate": run_calibrate, "bench": run_bench}[args.command]
    try:
        return runner(args)
    except (ConfigError, InputError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
