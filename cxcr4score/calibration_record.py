"""The calibration record: what ``cxcr4score calibrate`` fitted, on what, and how well.

A YAML file (thresholds, the settings the cells were measured and classified with, the data
used, cross-validated figures, date, version) that a config references with the key
``calibration``. A config counts as calibrated only with a record whose thresholds and
measurement settings are the config's own (:func:`config_problems`), so ``calibrated: true``
cannot be set by hand, and changing a setting the thresholds depend on (stains, nuclei, cell
expansion, compartments, ...) takes the calibration away until it is refitted.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

from .tables import write_yaml

#: Marks a file as a calibration record; its value is the record format's version.
FORMAT_KEY = "cxcr4score_calibration"
FORMAT_VERSION = 1

#: Config keys that change the cells' DAB values or which cells are scored and how: thresholds
#: fitted under one setting of these do not carry over to another.
MEASUREMENT_KEYS = (
    "analysis_mpp", "default_mpp", "default_i0", "stains", "stain_estimation", "tissue", "nuclei", "cell_expansion_um",
    "membrane_band_um", "membrane_capture_um", "compartments", "class_rule", "membrane_exposed_max",
    "tumour_cells", "roi_classes",
)

#: The version since which the cells' scored values are what this version computes (0.10.0: an
#: exposed cell with a located line is read on its membrane): thresholds fitted on the values
#: of an earlier version do not carry over.
SCORED_VALUES_SINCE = (0, 10, 0)

_THRESHOLD_TOLERANCE = 1e-9


def plain(value):
    """``value`` with NumPy scalars and arrays as Python numbers and lists (NaN as None), for YAML."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, (np.integer, bool, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_record(record, path):
    """Write a record (a dict made by :mod:`cxcr4score.calibrate_command`) as YAML."""
    write_yaml({FORMAT_KEY: FORMAT_VERSION, **plain(record)}, path,
               header=f"# Written by `cxcr4score calibrate`; a config uses it with `calibration: {path}`.\n")


def read_record(path):
    """Read a calibration record.

    Returns
    -------
    record : dict or None
    problems : list of str
        Why the file is not a usable record (empty when it is), each naming it.
    """
    path = Path(path)
    try:
        record = yaml.safe_load(path.read_text())
    except OSError as err:
        return None, [f"cannot read calibration record {path}: {err.strerror or err}"]
    except yaml.YAMLError as err:
        return None, [f"calibration record {path} is not valid YAML: {' '.join(str(err).split())}"]
    if not isinstance(record, dict) or FORMAT_KEY not in record:
        return None, [f"{path} is not a calibration record (written by cxcr4score calibrate)"]
    if record[FORMAT_KEY] != FORMAT_VERSION:
        return None, [f"calibration record {path} has format {record[FORMAT_KEY]!r}; this version reads "
                      f"{FORMAT_VERSION}"]
    thresholds = record.get("thresholds")
    settings = record.get("settings")
    if (not isinstance(thresholds, list) or len(thresholds) != 3
            or not all(isinstance(t, (int, float)) for t in thresholds) or not isinstance(settings, dict)):
        return None, [f"calibration record {path} lacks its thresholds or settings"]
    missing = [k for k in MEASUREMENT_KEYS if k not in settings]
    if missing:
        return None, [f"calibration record {path} lacks the settings {', '.join(missing)} (write records with "
                      "cxcr4score calibrate)"]
    return record, []


def _comparable(settings, key):
    """A setting as it matters to the scores: the order of compartments does not (their
    classes are maximised), nor do compartments at all unless class_rule is max."""
    value = plain(settings[key])
    if key == "compartments":
        return sorted(value) if settings["class_rule"] == "max" else None
    return value


def config_problems(record, config, path):
    """Why ``config`` may not use ``record``: thresholds, measurement settings or assay differ.

    Parameters
    ----------
    record : dict
        From :func:`read_record`.
    config : dict
        The effective configuration.
    path : str
        The record's path, for the messages.

    Returns
    -------
    list of str
        One sentence per difference, naming the key and both values.
    """
    problems = []
    version = str(record.get("cxcr4score_version", ""))
    if _version_tuple(version) < SCORED_VALUES_SINCE:
        since = ".".join(map(str, SCORED_VALUES_SINCE))
        problems.append(f"{path} was fitted by cxcr4score {version or '(unknown version)'}, on scored values that "
                        f"{since} changed: refit with cxcr4score calibrate on results of this version, or drop "
                        "calibration")
    fitted = [float(t) for t in record["thresholds"]]
    if any(abs(a - b) > _THRESHOLD_TOLERANCE for a, b in zip(fitted, config["thresholds"])):
        problems.append(f"thresholds {list(config['thresholds'])} are not the calibrated {fitted} of {path}: "
                        f"set thresholds: {fitted}")
    settings = record["settings"]
    for key in MEASUREMENT_KEYS:
        if _comparable(settings, key) != _comparable(config, key):
            problems.append(f"{key} is {plain(config[key])!r} but {path} was fitted on cells measured with "
                            f"{settings[key]!r}: refit with cxcr4score calibrate, or drop calibration")
    for key, value in (record.get("assay") or {}).items():
        if value and config["assay"].get(key, "") != value:
            problems.append(f"assay.{key} is {config['assay'].get(key, '')!r} but {path} was fitted on {value!r}")
    return problems


def _version_tuple(text):
    """``"0.10.0"`` as ``(0, 10, 0)``; ``(-1,)`` when it is not such a version."""
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (-1,)


def describe(config):
    """One sentence on the thresholds in use and their calibration, for the report.

    Parameters
    ----------
    config : dict
        The effective configuration (validated, so a given record fits it).
    """
    thresholds = " / ".join(f"{t:g}" for t in config["thresholds"])
    if not config["calibration"]:
        return f"thresholds {thresholds} (mean DAB OD): not calibrated for this assay"
    record, _ = read_record(config["calibration"])
    fitted, data = record.get("fitted_to", {}), record.get("data", {})
    unit = fitted.get("unit", "patient")
    held = record.get("cross_validation", {}).get("held_out", {})
    before = record.get("cross_validation", {}).get("uncalibrated", {})
    figures = ", ".join(f"{name} {held[key]:.3g}" for key, name in
                        (("mean_abs_error", "MAE"), ("spearman", "Spearman"), ("kappa", "weighted kappa"))
                        if isinstance(held.get(key), (int, float)))
    if isinstance(before.get("mean_abs_error"), (int, float)):
        figures += f" (MAE {before['mean_abs_error']:.3g} at the thresholds before)"
    return (f"thresholds {thresholds} (mean DAB OD): calibrated by {config['calibration']}, fitted to the "
            f"pathologist's {fitted.get('measure', '?')} of {data.get(unit + 's', '?')} {unit}s "
            f"({str(record.get('created', '?'))[:10]}, cxcr4score {record.get('cxcr4score_version', '?')}); "
            f"held-out folds: {figures or 'no figures'}")
