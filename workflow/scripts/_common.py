"""Shared start of every workflow script: log to snakemake.log, threads, effective config."""

import json
import logging
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


def read_json(path):
    with open(path) as handle:
        return json.load(handle)

