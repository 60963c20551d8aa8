"""Fuzzing of every input a user hands over: damaged images, sample sheets, configurations.

Every case must end in our clear error (naming the file, sheet row or config key) or in a
result, never in a hang, a crash or a library traceback (DESIGN section 4, bad input).

Images: truncated, bit-flipped, zeroed and header- or tail-overwritten copies of every scan in
``../shared/data/wsi`` and of generated tiled-pyramidal TIFF, strip TIFF, JPEG and PNG files go
through the workflow's reads in a subprocess (``tests/fuzz_probe.py``; C decoders hold the GIL,
so only a process can be timed out), one process for all cases and restarted after a crash or
a hang. Sheets and configurations are pure Python and run in-process.

Hypothesis is derandomised, so CI runs the same cases every time. The number of cases per test
is ``CXCR4SCORE_FUZZ_EXAMPLES`` (default 10 per image source, 10x that per sheet or config
test); a long local run raises it, e.g. ``CXCR4SCORE_FUZZ_EXAMPLES=200 pytest tests/test_fuzz.py
-s`` (``-s`` shows how many cases ran and how they ended).
"""

from __future__ import annotations

import collections
import json
import math
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import jsonschema
import numpy as np
import pytest
import tifffile
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxcr4score import config, sheets
from cxcr4score.errors import InputError

from .real_data import WSI

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("CXCR4SCORE_FUZZ_EXAMPLES", "10"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
FUZZ_PURE = settings(FUZZ, max_examples=10 * EXAMPLES)
#: Seconds one image case may take in the probe process before it counts as a hang.
CASE_TIMEOUT_S = 30.0
#: How the cases ended, by test kind (printed at the end with ``-s``).
OUTCOMES: collections.Counter = collections.Counter()

_NOT_IMAGES = {".txt", ".md", ".tsv"}
WSI_FILES = sorted(p.name for p in WSI.iterdir() if p.suffix.lower() not in _NOT_IMAGES) if WSI.is_dir() else []
GENERATED = ("pyramid_jpeg.ome.tif", "pyramid_lzw.tif", "strips.tif", "tile.jpg", "tile.png")


@pytest.fixture(scope="module", autouse=True)
def _outcome_summary():
    yield
    print(f"\nfuzz cases by kind and outcome: {dict(sorted(OUTCOMES.items()))}; "
          f"{sum(OUTCOMES.values())} in all")


def _smooth_rgb(rows, cols, seed):
    """A tissue-like RGB image (smooth colour fields plus noise), so JPEG tiles are realistic."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 250, (rows // 32 + 1, cols // 32 + 1, 3)).astype(np.float32)
    fields = np.kron(coarse, np.ones((32, 32, 1), np.float32))[:rows, :cols]
    return np.clip(fields + rng.normal(0, 12, (rows, cols, 3)), 0, 255).astype(np.uint8)


def _write_generated(name, path):
    rgb = _smooth_rgb(384, 512, seed=len(name))
    if name == "tile.jpg":
        iio.imwrite(path, rgb, extension=".jpg", quality=90)
    elif name == "tile.png":
        iio.imwrite(path, rgb)
    elif name == "strips.tif":
        tifffile.imwrite(path, rgb, photometric="rgb", rowsperstrip=16, resolution=(4e4, 4e4),
                         resolutionunit="CENTIMETER", metadata=None)
    else:  # a tiled pyramid, reduced levels in SubIFDs of level 0 (as QuPath and bfconvert write)
        ome = name.endswith(".ome.tif")
        options = {"tile": (64, 64), "photometric": "rgb", "compression": "jpeg" if ome else "lzw"}
        levels = [rgb, rgb[::2, ::2].copy(), rgb[::4, ::4].copy()]
        with tifffile.TiffWriter(path, ome=ome) as tif:
            tif.write(levels[0], subifds=len(levels) - 1, **options,
                      metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25} if ome else None)
            for level in levels[1:]:
                tif.write(level, subfiletype=1, **options)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Name -> bytes of every undamaged source image (the scans and the generated files)."""
    folder = tmp_path_factory.mktemp("sources")
    found = {name: (WSI / name).read_bytes() for name in WSI_FILES}
    for name in GENERATED:
        _write_generated(name, folder / name)
        found[name] = (folder / name).read_bytes()
    return found


class Prober:
    """The probe process (``tests/fuzz_probe.py``): one path in, one outcome out, with a timeout.

    Parameters
    ----------
    command : list of str
        Starts the process: it prints ``FUZZ ready``, then one ``FUZZ {json}`` line per path it
        reads from stdin.
    stderr_path : Path
        Where the process's stderr goes (a crash's C-level stack is there).
    timeout : float
        Seconds one case may take before it counts as a hang.
    """

    def __init__(self, command: list[str], stderr_path: Path, timeout: float = CASE_TIMEOUT_S):
        self.command, self.stderr_path, self.timeout = command, stderr_path, timeout
        self.process = None
        self._buffer = b""
        self.warnings: list[str] = []  # every warning a case gave, in order

    def _start(self):
        self.stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in _stop)
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, cwd=REPO)
        self._buffer = b""
        line = self._line(timeout=300.0)
        if line != "ready":
            self._stop()
            raise RuntimeError(f"fuzz probe did not start ({line!r}): {self.stderr_path.read_text(errors='replace')}")

    def _stop(self, *, kill=True):
        if self.process is not None:
            self.process.stdin.close()
            if kill:
                self.process.kill()
            self.process.wait(timeout=60)
            self.process.stdout.close()
            self.stderr.close()
            self.process = None

    def _line(self, timeout: float) -> str | None:
        """The next ``FUZZ`` line without its prefix; None at a timeout or once the process ended."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                if b"\n" in self._buffer:
                    line, self._buffer = self._buffer.split(b"\n", 1)
                    if line.startswith(b"FUZZ "):
                        return line[5:].decode()
                    continue  # anything a library printed
                if not selector.select(timeout):
                    return None
                chunk = os.read(self.process.stdout.fileno(), 1 << 16)
                if not chunk:  # the process ended (or closed its stdout)
                    self.process.wait(timeout=60)
                    return None
                self._buffer += chunk

    def probe(self, path: Path) -> tuple[str, object]:
        """Outcome of one image: ``result``, ``input_error`` or ``crash`` (see fuzz_probe), or
        ``hang`` (no answer within ``timeout``) or ``died`` (the process ended)."""
        if self.process is None:
            self._start()
        self.process.stdin.write(f"{path}\n".encode())
        self.process.stdin.flush()
        line = self._line(self.timeout)
        if line is not None:
            answer = json.loads(line)
            self.warnings.extend(answer["warnings"])
            return answer["outcome"], answer["detail"]
        ended = self.process.poll()
        self._stop()
        if ended is None:
            return "hang", f"no answer within {self.timeout:g} s"
        return "died", f"exit status {ended}: {self.stderr_path.read_text(errors='replace')[-3000:]}"

    def close(self):
        """End the process (it exits at the end of its input)."""
        self._stop(kill=False)


@pytest.fixture(scope="module")
def prober(tmp_path_factory, sources):
    folder = tmp_path_factory.mktemp("probe")
    warm_up = folder / "pyramid_jpeg.ome.tif"
    warm_up.write_bytes(sources["pyramid_jpeg.ome.tif"])
    running = Prober([sys.executable, str(REPO / "tests" / "fuzz_probe.py"), str(warm_up)], folder / "stderr.txt")
    yield running
    running.close()
    print(f"\nwarnings of the image cases: {dict(collections.Counter(running.warnings))}")


_FAKE_PROBE = """
import json, os, resource, signal, sys, time
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # as fuzz_probe: no core file
print("FUZZ ready", flush=True)
for line in sys.stdin:
    path = line.strip()
    if path == "hang":
        time.sleep(600)
    if path == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    print("library chatter", flush=True)
    print("FUZZ " + json.dumps({"outcome": "crash", "detail": path, "warnings": ["UserWarning: w"]}), flush=True)
"""


def test_prober_tells_a_crash_a_hang_and_a_dead_process_and_starts_again(tmp_path):
    """The harness itself: what each fuzz case's outcome rests on."""
    prober = Prober([sys.executable, "-c", _FAKE_PROBE], tmp_path / "stderr.txt", timeout=2.0)
    assert prober.probe(Path("a")) == ("crash", "a") and prober.warnings == ["UserWarning: w"]
    assert prober.probe(Path("hang")) == ("hang", "no answer within 2 s")
    outcome, detail = prober.probe(Path("segfault"))
    assert outcome == "died" and detail.startswith(f"exit status {-signal.SIGSEGV}")
    assert prober.probe(Path("b")) == ("crash", "b")
    prober.close()
    assert prober.process is None


# --------------------------------------------------------------------------------------
# Damage: each case is one of these, drawn for a file of n bytes.
# --------------------------------------------------------------------------------------

#: Bytes at the start (TIFF header and first IFDs, PNG / JPEG headers) or end (IFDs written
#: after the pixel data) where one overwritten byte changes how the file is read.
HEAD_BYTES = 4096


def damage(n: int):
    """Strategy of one damage to a file of ``n`` bytes: ``("truncate", offset)``,
    ``("flip", ((byte, bit), ...))``, ``("zero", start, length)`` or ``("overwrite", ((byte,
    value), ...))`` in the first or last :data:`HEAD_BYTES`."""
    byte = st.integers(0, n - 1)
    near_end = st.integers(max(0, n - HEAD_BYTES), n - 1)
    return st.one_of(
        st.tuples(st.just("truncate"), byte),
        st.tuples(st.just("flip"), st.lists(st.tuples(byte, st.integers(0, 7)), min_size=1, max_size=16).map(tuple)),
        st.tuples(st.just("zero"), byte, st.integers(1, HEAD_BYTES)),
        st.tuples(st.just("overwrite"), st.lists(st.tuples(st.integers(0, min(n, HEAD_BYTES) - 1) | near_end,
                                                           st.integers(0, 255)), min_size=1, max_size=8).map(tuple)),
    )


def damaged(data: bytes, case: tuple) -> bytes:
    """``data`` with one :func:`damage` case applied."""
    kind = case[0]
    if kind == "truncate":
        return data[:case[1]]
    out = bytearray(data)
    if kind == "flip":
        for byte, bit in case[1]:
            out[byte] ^= 1 << bit
    elif kind == "zero":
        start, length = case[1], case[2]
        out[start:start + length] = bytes(len(out[start:start + length]))
    else:
        for byte, value in case[1]:
            out[byte] = value
    return bytes(out)


def _assert_ours_or_result(path: Path, outcome: str, detail) -> None:
    """An image case ended in a result or in InputError problems that each name the file."""
    assert outcome in ("result", "input_error"), f"{path.name}: {outcome}\n{detail}"
    if outcome == "input_error":
        assert detail, f"{path}: InputError without problems"
        for problem in detail:
            assert str(path) in problem and "Traceback" not in problem, problem


@pytest.mark.parametrize("name", WSI_FILES + list(GENERATED))
@FUZZ
@given(data=st.data())
def test_damaged_image_ends_in_our_error_or_a_result(name, sources, prober, tmp_path_factory, data):
    original = sources[name]
    case = data.draw(damage(len(original)), label="damage")
    folder = tmp_path_factory.getbasetemp() / "damaged"
    folder.mkdir(exist_ok=True)
    path = folder / name  # the original name: an OME-TIFF's XML names its file
    path.write_bytes(damaged(original, case))
    warned = len(prober.warnings)
    outcome, detail = prober.probe(path)
    OUTCOMES["image", outcome] += 1
    _assert_ours_or_result(path, outcome, detail)
    assert prober.warnings[warned:] == []  # as the test suite's filterwarnings = error


@pytest.mark.parametrize("name", WSI_FILES + list(GENERATED))
def test_undamaged_sources_are_read(name, sources, prober, tmp_path):
    """The fuzz starts from files the probe reads (except the scans that are broken on purpose)."""
    path = tmp_path / name
    path.write_bytes(sources[name])
    outcome, detail = prober.probe(path)
    assert outcome == ("input_error" if name.startswith("un") else "result"), detail


# --------------------------------------------------------------------------------------
# Sample sheets
# --------------------------------------------------------------------------------------

_COLUMNS = list(sheets.SHEET_COLUMNS) + ["Patient_ID", "patient id", " slide_id ", "paht", "slide", "", "block",
                                          "ö", "path"]
_FILES = ("a.tif", "b.SVS", "ö ü.png", "img/c.jpg", "sub", "missing.tif", "notes.txt", "../a.tif", "/nonexistent/x.tif")
_VALUES = ("", " ", "0.25", "-1", "nan", "inf", "1e400", "0", "2024-02-30", "2024-03-01", "007", "S 1", "S1",
           "S.1-a_b", '"quoted', "a\tb", "a,b", ";", "P\u00e4", "\u00a0", "\x00")
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_SHEET_NAMES = ("slides.tsv", "slides.csv", "slides.txt", "my slides \u00f6.TSV") * 3 + ("s.xlsx",)


@st.composite
def sheet_bytes(draw):
    """A sample sheet's file name and bytes: columns with typos, repeated ids, odd values, BOM,
    CRLF, several encodings, or random bytes."""
    name = draw(st.sampled_from(_SHEET_NAMES))
    if draw(st.integers(0, 9)) == 0:
        return name, draw(st.binary(max_size=300))
    natural = "," if name.endswith(".csv") else "\t"
    sep = draw(st.sampled_from([natural] * 3 + ["\t", ",", ";", "|"]))
    if draw(st.integers(0, 3)):  # mostly the required columns, in any order, and some others
        columns = draw(st.permutations(list(sheets.SHEET_COLUMNS[:3]) + draw(st.lists(st.sampled_from(_COLUMNS),
                                                                                       max_size=3))))
    else:
        columns = draw(st.lists(st.sampled_from(_COLUMNS) | _TEXT, min_size=0, max_size=8))
    value = st.sampled_from(_FILES + _VALUES) | _TEXT
    by_column = {"path": st.sampled_from(_FILES[:4] * 3 + _FILES),  # mostly images that exist
                 "slide_id": st.sampled_from(["S1", "S2", "S3", "S.1-a_b", "S 1", ""]),
                 "patient_id": st.sampled_from(["P1", "007", "P\u00e4", " P2 ", ""]),
                 "mpp": st.sampled_from(["", "0.25", "0.5"]) | value,
                 "roi": st.sampled_from(["", "", "a.tif"]) | value,
                 "collected": st.sampled_from(["", "2024-03-01"]) | value}
    row = st.tuples(*[by_column.get(c, value) for c in columns]).map(list)
    rows = draw(st.lists(row, min_size=1, max_size=3) | st.lists(row | st.lists(value, max_size=len(columns) + 1),
                                                                  max_size=6))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(sep.join(line) for line in [columns, *rows]) + draw(st.sampled_from(["", newline]))
    encoding = draw(st.sampled_from(["utf-8"] * 3 + ["utf-8-sig", "latin-1", "utf-16", "cp1252"]))
    return name, text.encode(encoding, errors="replace")


@pytest.fixture(scope="module")
def sheet_folder(tmp_path_factory):
    """A folder with the images and non-images that generated sheets name."""
    folder = tmp_path_factory.mktemp("sheet") / "cohort"
    for name in ("a.tif", "b.SVS", "ö ü.png", "img/c.jpg", "notes.txt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    (folder / "sub").mkdir()
    return folder


_SLIDES_SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "slides.schema.yaml").read_text())


@FUZZ_PURE
@given(sheet=sheet_bytes())
def test_generated_sheet_ends_in_our_error_or_a_valid_slide_list(sheet, sheet_folder):
    name, content = sheet
    path = sheet_folder / name
    path.write_bytes(content)
    try:
        table = sheets.load_slides(path)
    except InputError as err:
        OUTCOMES["sheet", "input_error"] += 1
        assert err.problems
        for problem in err.problems:
            assert path.name in problem and "Traceback" not in problem, problem
        return
    finally:
        path.unlink()
    OUTCOMES["sheet", "result"] += 1
    assert list(table.columns[:len(sheets.SHEET_COLUMNS)]) == list(sheets.SHEET_COLUMNS)
    assert len(table) and table["slide_id"].is_unique
    for row in table.to_dict("records"):  # as common.smk's validate(SLIDES, slides.schema.yaml)
        jsonschema.validate(row, _SLIDES_SCHEMA)
        assert Path(row["path"]).is_file(), row


# --------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------

_DEFAULTS = config.default_config()


def _leaf_keys(mapping, prefix=()):
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            yield from _leaf_keys(value, prefix + (key,))
        else:
            yield prefix + (key,)


_LEAVES = sorted(_leaf_keys(_DEFAULTS))
_YAML_TEXT = ("[0.25,0.5,0.75]", "[0.5, 0.4, 0.6]", "[0.2, 0.4", "{metric: h_score, cutoff: 100}", "{cutoff: .nan}",
              "{", "membrane", "'", ".nan", ".inf", "-.inf", "1.0e+400", "1e400", "9" * 400, "~", "yes", "2024-01-01",
              "&a [*a]", "!!python/object/apply:os.system ['true']", "{min_area_um2: 500}", "[]", "{}", "\x00")
_NUMBER = st.one_of(st.floats(), st.integers(-(10**20), 10**20), st.sampled_from([10**400, -(10**400), 0, 1, 300, 101]))
_SCALAR = st.one_of(st.none(), st.booleans(), _NUMBER, _TEXT, st.sampled_from(_YAML_TEXT))
_VALUE = st.recursive(_SCALAR, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from([k[-1] for k in _LEAVES]) | _TEXT, inner, max_size=4),
                      max_leaves=8)


def _default_at(keys):
    value = _DEFAULTS
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _like(default):
    """Values of the default's type and near its range, and their --config strings, so that
    some cases pass validation."""
    if isinstance(default, bool):
        like = st.booleans()
    elif isinstance(default, (int, float)):
        like = st.integers(0, 2 * int(default) + 1) | st.floats(0, 2 * default + 1)
    elif isinstance(default, list) and default and isinstance(default[0], (int, float)):
        like = st.lists(st.floats(0, 1), min_size=3, max_size=3)
    else:
        return st.just(default)
    return like | like.map(str)


@st.composite
def config_overrides(draw):
    """Overrides as a config file or ``--config`` gives them: defaults' keys (nested ones too)
    set to odd values of any type, unknown and misspelled keys, thresholds in any order."""
    overrides: dict = {}
    for _ in range(draw(st.integers(1, 4))):
        keys = draw(st.sampled_from(_LEAVES + [("no_such_key",), ("Thresholds",), ("eligibility", "cutof")]))
        value = draw(st.one_of(_VALUE, st.lists(_NUMBER, min_size=3, max_size=3), st.sampled_from(_YAML_TEXT),
                               _like(_default_at(keys))))
        target = overrides
        for key in keys[:-1]:
            target = target.setdefault(key, {}) if isinstance(target.get(key, {}), dict) else {}
        target[keys[-1]] = value
    return overrides


def _numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def _assert_valid_config(effective):
    jsonschema.Draft202012Validator(config.load_schema()).validate(effective)
    assert all(math.isfinite(v) for v in _numbers(effective) if isinstance(v, float)), effective
    for key in ("thresholds", "pixel_thresholds"):
        assert all(a < b for a, b in zip(effective[key], effective[key][1:]))


@FUZZ_PURE
@given(overrides=config_overrides())
def test_generated_config_ends_in_our_error_or_a_valid_config(overrides):
    try:
        effective = config.validate(overrides)
    except config.ConfigError as err:
        OUTCOMES["config", "config_error"] += 1
        assert "config key '" in str(err), str(err)
        return
    OUTCOMES["config", "result"] += 1
    _assert_valid_config(effective)


@FUZZ_PURE
@given(text=st.one_of(st.binary(max_size=200), st.builds(yaml.safe_dump, config_overrides()).map(str.encode),
                      st.sampled_from(_YAML_TEXT).map(str.encode)))
def test_generated_config_file_ends_in_our_error_or_a_valid_config(text, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz config.yaml"
    path.write_bytes(text)
    try:
        effective = config.from_file(path)
    except config.ConfigError as err:
        OUTCOMES["config file", "config_error"] += 1
        assert "config key '" in str(err) or str(path) in str(err), str(err)
        return
    OUTCOMES["config file", "result"] += 1
    _assert_valid_config(effective)
