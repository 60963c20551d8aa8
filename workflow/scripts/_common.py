"""Shared start of every workflow script: log to snakemake.log, threads, the rule's config."""

import contextlib
import json
import logging
import os
import sys


def start(snakemake):
    """Send stderr to the rule's log (line-buffered), set thread counts and memory reuse, return a logger."""
    log_file = open(snakemake.log[0], "w", buffering=1)
    sys.stderr = log_file
    logging.basicConfig(stream=log_file, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from cxcr4score import runtime

    runtime.set_threads(snakemake.threads)
    runtime.keep_freed_memory()
    return logging.getLogger(snakemake.rule)


def warn(message):
    """Report something the user should know in the log and on the console; the job goes on."""
    print(message, file=sys.stderr)
    print(message, file=sys.__stderr__)


def fail(message):
    """Report a problem in the log and on the console, then stop the job."""
    warn(message)
    raise SystemExit(1)


def rule_config(*params):
    """The configuration a rule passes in its params (``config_subset`` JSON, dotted keys for one
    key of a mapping), nested again as the effective config is.

    Scripts read only this, never the whole config: a key a rule does not declare then
    cannot change its output without rerunning it (a missing key is a KeyError, not a stale file).
    """
    config = {}
    for text in params:
        for key, value in json.loads(text).items():
            *parents, last = key.split(".")
            node = config
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
    return config


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def read_slide_info(path):
    """A slide's info.json as a SlideInfo; one that another version wrote stops the job with
    what to do, not a traceback."""
    from cxcr4score.slide_info import SlideInfo

    try:
        return SlideInfo.from_json(read_json(path))
    except ValueError as err:
        fail(f"{path}: {err}: written by another cxcr4score version; run again with "
             "snakemake --forcerun slide_info")



@contextlib.contextmanager
def staged(outputs):
    """Stand-in paths for a job's outputs, moved to them only once every one is written.

    Yields a dict from each output path to a path of the same name in a hidden folder of
    this job's beside it (the same name, so that writers that go by the name, or write it into
    a file, see the real one). Snakemake takes an output that exists after a killed job for
    incomplete and will not go on without --rerun-incomplete; a job that writes several
    outputs one after another (a batch of small images writes dozens) would leave some. Here
    they appear together at the end, or not at all.
    """
    folder = f".staged-{os.getpid()}"
    paths = {str(p): os.path.join(os.path.dirname(str(p)), folder, os.path.basename(str(p))) for p in outputs}
    try:
        yield paths
        for path, stand_in in paths.items():
            os.replace(stand_in, path)
    finally:  # a failed job leaves no hidden folder behind
        for stand_in in paths.values():
            with contextlib.suppress(OSError):
                os.remove(stand_in)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(stand_in))
