"""Shared start of every workflow script: log to snakemake.log, threads, the rule's config."""

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

