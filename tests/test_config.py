"""Configuration: schema defaults, typed coercion of --config strings, deep merge, errors."""

from pathlib import Path

import pytest
import yaml

from cxcr4score import config

REPO = Path(__file__).resolve().parents[1]


def test_config_yaml_equals_schema_defaults():
    """config/config.yaml writes every schema default (snakemake#3614: cluster jobs may skip them)."""
    written = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config.validate(written) == config.default_config()
    assert set(written) == set(config.load_schema()["properties"])


def test_workflow_schema_is_the_package_schema():
    linked = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert linked == config.load_schema()


@pytest.mark.parametrize(
    ("overrides", "key", "expected"),
    [
        ({"thresholds": "[0.25,0.5,0.75]"}, "thresholds", [0.25, 0.5, 0.75]),
        ({"compartments": "[membrane]"}, "compartments", ["membrane"]),
        ({"compartments": "membrane"}, "compartments", ["membrane"]),
        ({"class_rule": "cell"}, "class_rule", "cell"),
        ({"patient_rule": "most_recent"}, "patient_rule", "most_recent"),
        ({"on_bad_slide": "skip"}, "on_bad_slide", "skip"),
        ({"outdir": "elsewhere"}, "outdir", "elsewhere"),
        ({"slides": "/data/cohort/"}, "slides", "/data/cohort/"),
        ({"internal_control": "{enabled: false}"}, "internal_control", {"enabled": False, "min_immune_cells": 50,
                                                                         "min_pct_positive": 1.0}),
        ({"default_mpp": "0.25"}, "default_mpp", 0.25),
        ({"patients": "patients.csv"}, "patients", "patients.csv"),
        ({"listed_criteria": "{ecog: [0, 1, 2]}"}, "listed_criteria", {"her2_status": ["negative", "low"], "ecog": [0, 1, 2]}),
        ({"listed_criteria": "{her2_status: low}"}, "listed_criteria", {"her2_status": ["low"], "ecog": [0, 1]}),
    ],
)
def test_string_overrides_are_coerced_by_schema_type(overrides, key, expected):
    """Reference: the documented --config syntax (README) and the schema's types."""
    assert config.validate(overrides)[key] == expected


def test_mapping_override_keeps_other_keys_of_the_file():
    base = config.default_config() | {"eligibility": {"metric": "pct_positive", "cutoff": 1.0, "min_cells": 250,
                                                      "threshold_tolerance": 0.05}}
    merged = config.merge(base, config.coerce({"eligibility": "{metric: h_score, cutoff: 100}"}))
    effective = config.validate(merged)["eligibility"]
    assert effective == {"metric": "h_score", "cutoff": 100.0, "min_cells": 250, "threshold_tolerance": 0.05}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"thresholds": "[0.5, 0.4, 0.6]"}, "'thresholds': thresholds must increase"),
        ({"thresholds": "[0.5, 0.4]"}, "'thresholds'"),
        ({"eligibility": "{metric: hscore}"}, "'eligibility.metric'"),
        ({"class_rule": "mean"}, "'class_rule'"),
        ({"thresholds": "[0.2, 0.4"}, "'thresholds': cannot parse"),
        ({"no_such_key": 1}, "no_such_key"),
        ({"nuclei": "{min_area_um2: 500}"}, "min_area_um2"),
        ({"listed_criteria": "{her2_status: [HER2-negative]}"}, "'listed_criteria.her2_status.0'"),
        ({"listed_criteria": "{ecog: [0, 6]}"}, "'listed_criteria.ecog.1'"),
        ({"listed_criteria": "{ecog: []}"}, "'listed_criteria.ecog'"),
        ({"listed_criteria": "{ps: [0]}"}, "'listed_criteria'.*'ps'"),
        ({"patients": ["a.csv", "b.csv"]}, "'patients'"),
        # found by tests/test_fuzz.py: an OverflowError, and NaN / infinity passed validation
        ({"analysis_mpp": "9" * 400}, "'analysis_mpp': a number of about 400 digits is too large"),
        ({"analysis_mpp": ".nan"}, "'analysis_mpp': nan is not a finite number"),
        ({"eligibility": {"cutoff": float("-inf")}}, "'eligibility.cutoff': -inf is not a finite number"),
        ({"thresholds": "[0.2, .nan, 0.6]"}, "'thresholds.1': nan is not a finite number"),
        ({"thresholds": "&a [*a]"}, "'thresholds.0': .* is not of type 'number'"),  # a list holding itself
    ],
)
def test_bad_config_names_the_key(overrides, message):
    with pytest.raises(config.ConfigError, match=message.replace("[", r"\[")):
        config.validate(overrides)


@pytest.mark.parametrize("rule, words", [({"metric": "pct_positive", "cutoff": 150}, r"above the largest pct_positive \(100\)"),
                                         ({"metric": "h_score", "cutoff": 301}, r"above the largest h_score \(300\)")])
def test_a_cutoff_no_patient_can_reach_is_refused(rule, words):
    with pytest.raises(config.ConfigError, match=words):
        config.validate({"eligibility": rule})
    assert config.validate({"eligibility": {"metric": "h_score", "cutoff": 150}})["eligibility"]["cutoff"] == 150


def test_from_snakemake_deep_merges_the_overrides_into_the_files(tmp_path):
    """With the config files and the --config values, a mapping given on the command line keeps
    the file's other keys; without them (a Snakemake without those attributes) the public config
    is used, coerced: the run works, the mapping replaces the file's."""
    path = tmp_path / "c.yaml"
    path.write_text("eligibility: {min_cells: 250}\nthresholds: [0.25, 0.5, 0.75]\n")
    overrides = {"eligibility": "{metric: h_score, cutoff: 100}"}
    merged = config.from_snakemake({}, [path], overrides)
    assert merged["eligibility"]["min_cells"] == 250 and merged["eligibility"]["cutoff"] == 100
    assert merged["thresholds"] == [0.25, 0.5, 0.75]
    public = {"eligibility": "{metric: h_score, cutoff: 100}", "thresholds": [0.25, 0.5, 0.75]}
    fallback = config.from_snakemake(public)
    assert fallback["eligibility"]["min_cells"] == 100 and fallback["eligibility"]["metric"] == "h_score"
    assert fallback["thresholds"] == [0.25, 0.5, 0.75]
    with pytest.raises(config.ConfigError, match="cannot read config"):
        config.from_snakemake({}, [tmp_path / "missing.yaml"], {})


@pytest.mark.parametrize(("content", "message"), [
    (b"thresholds: [0.2, 0.4, 0.6]\nclass_rule: m\xe4x\n", "can't decode byte 0xe4"),
    (b"- thresholds\n- class_rule\n", "it holds a list, not a mapping of config keys"),
    (b"cell\n", "it holds a str, not a mapping of config keys"),
])
def test_config_file_that_is_not_utf8_or_not_a_mapping_names_the_file(tmp_path, content, message):
    """Found by tests/test_fuzz.py: these were a UnicodeDecodeError and an AttributeError."""
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    for read in (config.from_file, lambda p: config.from_snakemake({}, [p], {})):
        with pytest.raises(config.ConfigError, match=f"cannot read config {path}: .*{message}"):
            read(path)
    path.write_bytes(b"")
    assert config.from_file(path) == config.default_config()
