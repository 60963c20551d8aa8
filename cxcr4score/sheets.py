"""The slide list: a sample sheet (TSV or CSV) or a folder of slides, checked row by row; and
the optional patients sheet of the listed protocol criteria (:func:`read_patients`).

Every problem is listed at once through :class:`~cxcr4score.errors.InputError`, each naming
the sheet and row or the file (DESIGN section 4).
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import re
import warnings
from pathlib import Path

import pandas as pd

from .errors import InputError
from .images import IMAGE_SUFFIXES
from .listed_criteria import PATIENT_COLUMNS, ecog_value, her2_value
from .pixel_size import is_positive_number


#: Sheet columns in output order: required first, then optional.
SHEET_COLUMNS = ("patient_id", "slide_id", "path", "mpp", "roi", "specimen", "collected")
_REQUIRED_COLUMNS = SHEET_COLUMNS[:3]
_SLIDE_ID_RE = re.compile(r"[A-Za-z0-9._-]+")
_UNSAFE_CHARS_RE = re.compile(r"[^A-Za-z0-9._-]")


def read_sheet(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a sample sheet (TSV or CSV) of slides.

    Parameters
    ----------
    path : str or path-like
        ``.tsv`` (tab), ``.csv`` (comma) or ``.txt`` (separator guessed from tab, comma,
        semicolon). Required columns ``patient_id, slide_id, path``; optional ``mpp, roi,
        specimen, collected``; other columns are kept after these.

    Returns
    -------
    DataFrame
        Every value a string (so ``007`` stays ``007``), surrounding spaces removed, missing
        optional columns filled with ''; ``path`` and ``roi`` made absolute, relative ones taken
        from the sheet's folder.

    Raises
    ------
    InputError
        Listing every problem in the sheet, each as ``"<sheet name> row <n>: ..."`` with n the
        1-based data row: missing columns, empty ids or paths, duplicate or malformed
        ``slide_id``, a non-numeric or non-positive ``mpp``, a ``collected`` that is not an ISO
        date, a missing image or roi file.
    """
    path = Path(path)
    table = _read_table_text(path)
    required = [c for c in _REQUIRED_COLUMNS if c in table.columns]
    problems = _missing_column_problems(path.name, table, _REQUIRED_COLUMNS)
    if table.empty:
        problems.append(f"{path.name}: has no slide rows")
    table = _normalise_columns(table)
    base = path.resolve().parent
    for column in ("path", "roi"):
        table[column] = [_absolute(value, base) for value in table[column]]
    for number, row in enumerate(table.to_dict("records"), start=1):
        problems.extend(f"{path.name} row {number}: {p}" for p in _row_problems(row, required))
    problems.extend(_duplicate_problems(path.name, table["slide_id"], "slide_id"))
    problems.extend(f"{path.name} row {number}: {problem}" for number, problem in _same_file_rows(table["path"]))
    if problems:
        raise InputError(problems)
    return table


def read_patients(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a patients sheet (TSV or CSV) for the listed protocol criteria.

    Parameters
    ----------
    path : str or path-like
        Read as a sample sheet is (``.tsv``, ``.csv`` or ``.txt``; UTF-8, with or without a
        BOM; every value a string, so ``007`` stays ``007``). Required columns ``patient_id,
        her2_status, ecog``; other columns are ignored and never read into outputs.

    Returns
    -------
    DataFrame
        ``patient_id`` (str), ``her2_status`` (one of
        :data:`~cxcr4score.listed_criteria.HER2_STATUSES`, lower case, or '' when blank) and
        ``ecog`` (int 0-5, or None when blank), one row per patient, in sheet order.

    Raises
    ------
    InputError
        Listing every problem in the sheet, each as ``"<sheet name> row <n>: ..."`` with n the
        1-based data row: missing columns, no rows, an empty or repeated ``patient_id``, a
        ``her2_status`` outside the vocabulary, an ``ecog`` that is not an integer 0-5.
    """
    path = Path(path)
    table = _read_table_text(path, what="patients sheet")
    problems = _missing_column_problems(path.name, table, PATIENT_COLUMNS)
    if table.empty:
        problems.append(f"{path.name}: has no patient rows")
    if problems:
        raise InputError(problems)
    rows = []
    for number, row in enumerate(table.to_dict("records"), start=1):
        values = {"patient_id": row["patient_id"]}
        if not row["patient_id"]:
            problems.append(f"{path.name} row {number}: patient_id is empty")
        for column, parse in (("her2_status", her2_value), ("ecog", ecog_value)):
            try:
                values[column] = parse(row[column])
            except ValueError as err:
                problems.append(f"{path.name} row {number}: {err}")
        rows.append(values)
    problems.extend(_duplicate_problems(path.name, table["patient_id"], "patient_id"))
    if problems:
        raise InputError(problems)
    return pd.DataFrame(rows, columns=list(PATIENT_COLUMNS), dtype=object)


def _missing_column_problems(name: str, table: pd.DataFrame, required) -> list[str]:
    return [f"{name}: missing required column '{c}'" for c in required if c not in table.columns]


def _same_file_rows(paths) -> list[tuple[int, str]]:
    """(1-based row, problem) for each row whose image is a file an earlier row already lists
    (by its real path): a slide listed twice would count its cells twice."""
    first_row: dict[str, int] = {}
    found = []
    for number, path in enumerate(paths, start=1):
        if not path or "\0" in path:  # realpath refuses a NUL; the row's path is reported as not found
            continue
        real = os.path.realpath(path)
        if real in first_row:
            found.append((number, f"{path} is the image of row {first_row[real]} again (its cells would count "
                                  "twice); list each slide once"))
        first_row.setdefault(real, number)
    return found


def _read_table_text(path: Path, what: str = "sample sheet") -> pd.DataFrame:
    """A sheet with every value a stripped string; ``what`` names the sheet in messages."""
    if not path.is_file():
        raise InputError([f"{path}: {what} not found"])
    suffix = path.suffix.lower()
    if suffix not in (".tsv", ".csv", ".txt"):
        raise InputError([f"{path}: a {what} must be .tsv, .csv or .txt (got '{path.suffix}')"])
    try:
        sep = {".tsv": "\t", ".csv": ","}.get(suffix) or _sniff_separator(path)
        with warnings.catch_warnings():  # a row longer than the header would lose data
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                                encoding="utf-8-sig", index_col=False)
    except pd.errors.EmptyDataError:
        raise InputError([f"{path}: the {what} is empty"]) from None
    except pd.errors.ParserWarning:
        raise InputError([f"{path}: a row has more values than the header has column names "
                          "(check the separator and quoting)"]) from None
    except (csv.Error, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError([_unreadable_sheet(path, exc, what)]) from None
    table.columns = [str(c).strip() for c in table.columns]
    repeated = sorted({c for c in table.columns if list(table.columns).count(c) > 1})
    if repeated:  # e.g. 'slide_id' and ' slide_id ': one would be dropped unseen
        raise InputError([f"{path}: column '{c}' appears more than once (spaces around names are ignored)"
                          for c in repeated])
    return table.apply(lambda column: column.str.strip())


def _unreadable_sheet(path: Path, exc: BaseException, what: str) -> str:
    hint = "; save it as UTF-8" if isinstance(exc, UnicodeDecodeError) else ""
    return f"{path}: cannot read the {what} ({' '.join(str(exc).split())}){hint}"


def _sniff_separator(path: Path) -> str:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        sample = handle.read(65536)
    return csv.Sniffer().sniff(sample, delimiters="\t,;").delimiter


def _normalise_columns(table: pd.DataFrame) -> pd.DataFrame:
    for column in SHEET_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    extras = [c for c in table.columns if c not in SHEET_COLUMNS]
    return table[list(SHEET_COLUMNS) + extras].reset_index(drop=True)


def _absolute(value: str, base: Path) -> str:
    if not value:
        return ""
    return os.path.abspath(base / Path(value).expanduser())


def _row_problems(row: dict, required: list[str]) -> list[str]:
    problems = [f"{column} is empty" for column in required if not row[column]]
    slide_id = row["slide_id"]
    if slide_id and not _SLIDE_ID_RE.fullmatch(slide_id):
        problems.append(f"slide_id '{slide_id}' may only contain letters, digits, '.', '_' and '-'")
    if row["mpp"] and not is_positive_number(row["mpp"]):
        problems.append(f"mpp '{row['mpp']}' is not a positive number (micrometres per pixel)")
    if row["collected"] and not _is_iso_date(row["collected"]):
        problems.append(f"collected '{row['collected']}' is not an ISO date (YYYY-MM-DD)")
    if row["path"]:
        problems.extend(_image_path_problems(Path(row["path"])))
    if row["roi"] and not Path(row["roi"]).is_file():
        problems.append(f"roi file not found: {row['roi']}")
    return problems


def _image_path_problems(path: Path) -> list[str]:
    if not path.exists():
        return [f"image file not found: {path}"]
    if path.is_dir():
        return [f"path is a folder, not an image file: {path}"]
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return [f"not a supported image type ('{path.suffix}'): {path}"]
    return []


def _is_iso_date(text: str) -> bool:
    for parse in (_dt.date.fromisoformat, _dt.datetime.fromisoformat):
        try:
            parse(text)
        except ValueError:
            continue
        return True
    return False


def _duplicate_problems(name: str, ids: pd.Series, column: str) -> list[str]:
    first_row: dict[str, int] = {}
    problems = []
    for number, value in enumerate(ids, start=1):
        if value and value in first_row:
            problems.append(f"{name} row {number}: {column} '{value}' repeats row {first_row[value]}")
        first_row.setdefault(value, number)
    return problems


def slides_from_folder(folder: str | os.PathLike, *, patient_pattern: str = "") -> pd.DataFrame:
    """List the slides in a folder: each sub-folder a patient, each image in it a slide.

    Parameters
    ----------
    folder : str or path-like
        The cohort folder.
    patient_pattern : str, optional
        A regular expression with a named group ``patient``, searched in each image's file name;
        when given it decides the patient instead of the folders.

    Returns
    -------
    DataFrame
        Columns ``patient_id, slide_id, path, mpp, roi, specimen, collected`` (strings; absolute
        paths; '' where unknown), sorted by patient_id then slide_id.

    Raises
    ------
    InputError
        The folder is missing or holds no images, the pattern is invalid or misses a file, or
        two images would get the same ``slide_id``.

    Notes
    -----
    - Images are files ending in one of :data:`IMAGE_SUFFIXES` (any case); hidden files and
      folders are ignored, as is everything else (sidecars such as ``*.truth.csv``,
      ``*.geojson``).
    - A patient folder is searched one level deep only, so a results folder or other nested
      material inside the cohort is not mistaken for slides.
    - An image directly in ``folder`` is its own patient, with the patient id taken from its
      stem.
    - ``stem`` is the file name without its extension and without a trailing ``.ome``.
      Patient ids are sanitised to ``[A-Za-z0-9._-]`` (other characters become ``_``), and
      ``slide_id = f"{patient_id}__{sanitised stem}"`` in every case, so a loose image
      ``P7.svs`` is patient ``P7`` with slide ``P7__P7``.
    - Companion folders of MIRAX (``X/`` beside ``X.mrxs``) and Olympus (``_X_/`` beside
      ``X.vsi``) slides are not patients, and the JPEGs a Hamamatsu ``.vms`` lists are not
      slides.
    - The DICOM ``.dcm`` files of one folder are one slide (OpenSlide opens it from any of its
      files), listed by the first file name; put each DICOM slide in its own patient folder, or
      list DICOM slides in a sample sheet (``path``: one ``.dcm`` file of the slide).
    - ``<stem>.roi.geojson``, else ``<stem>.geojson``, beside an image becomes its ``roi``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError([f"{folder}: slide folder not found"])
    images = _folder_images(folder)
    if not images:
        raise InputError([f"{folder}: no slide images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"])
    if patient_pattern:
        patients, problems = _patients_from_pattern(images, patient_pattern)
    else:
        patients, problems = [owner for _, owner in images], []
    rows = [_folder_row(image, patient) for (image, _), patient in zip(images, patients)
            if patient is not None]
    table = pd.DataFrame(rows, columns=list(SHEET_COLUMNS))
    problems.extend(_folder_duplicate_problems(table))
    problems.extend(_patient_clash_problems([p for p in patients if p is not None]))
    problems.extend(problem for _, problem in _same_file_rows(table["path"]))  # e.g. a link to another image
    if problems:
        raise InputError(problems)
    return table.sort_values(["patient_id", "slide_id"], kind="stable").reset_index(drop=True)


def _folder_images(folder: Path) -> list[tuple[Path, str]]:
    """Images in ``folder`` and its patient sub-folders, with the default owner (patient)."""
    found = []
    entries = _visible(folder)
    companions = _companion_folder_names(entries)
    for entry in _slide_files(entries):
        if entry.is_dir() and entry.name not in companions:
            found.extend((image, entry.name) for image in _slide_files(_visible(entry)) if _is_image(image))
        elif _is_image(entry):
            found.append((entry, image_stem(entry)))
    return found


def _slide_files(entries: list[Path]) -> list[Path]:
    """``entries`` without the files that belong to another slide: the JPEGs a Hamamatsu
    ``.vms`` lists, and every DICOM ``.dcm`` file but the first (a folder's DICOM files are one
    slide, which OpenSlide opens from any of them)."""
    taken = set()
    for entry in entries:
        if entry.suffix.lower() == ".vms" and entry.is_file():
            taken |= _vms_listed_files(entry)
    dicom = [e for e in entries if e.suffix.lower() == ".dcm" and e.is_file()]
    taken |= {e.name for e in dicom[1:]}
    return [e for e in entries if e.name not in taken]


def _vms_listed_files(vms: Path) -> set[str]:
    """File names a ``.vms`` index lists (``ImageFile``, ``MapFile``, ``MacroImage``, ... values)."""
    try:
        text = vms.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()  # validation reports the unreadable slide
    return {line.split("=", 1)[1].strip() for line in text.splitlines() if "=" in line} - {""}


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _companion_folder_names(entries: list[Path]) -> set[str]:
    names = set()
    for entry in entries:
        suffix = entry.suffix.lower()
        if entry.is_file() and suffix == ".mrxs":
            names.add(entry.stem)
        elif entry.is_file() and suffix == ".vsi":
            names.add(f"_{entry.stem}_")
    return names


def image_stem(path: str | os.PathLike) -> str:
    """File name without its extension and without a trailing ``.ome``.

    Examples
    --------
    >>> image_stem("/slides/P7/A 1.ome.tif"), image_stem("b.svs")
    ('A 1', 'b')
    """
    stem = Path(path).stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def sanitise_id(text: str) -> str:
    """Replace every character outside ``[A-Za-z0-9._-]`` by ``_``.

    Examples
    --------
    >>> sanitise_id("Patient 007/a")
    'Patient_007_a'
    """
    return _UNSAFE_CHARS_RE.sub("_", text)


def _patients_from_pattern(images: list[tuple[Path, str]], pattern: str) -> tuple[list, list[str]]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise InputError([f"patient_pattern '{pattern}' is not a valid regular expression ({exc})"]) from None
    if "patient" not in regex.groupindex:
        raise InputError([f"patient_pattern '{pattern}' has no named group 'patient', e.g. (?P<patient>[^_]+)"])
    patients, problems = [], []
    for image, _ in images:
        match = regex.search(image.name)
        patient = match.group("patient") if match else None
        if not patient:
            problems.append(f"{image}: patient_pattern '{pattern}' finds no patient in the file name")
        patients.append(patient or None)
    return patients, problems


def _folder_row(image: Path, patient: str) -> dict:
    patient_id = sanitise_id(patient)
    return {
        "patient_id": patient_id,
        "slide_id": f"{patient_id}__{sanitise_id(image_stem(image))}",
        "path": os.path.abspath(image),
        "mpp": "",
        "roi": _sidecar_roi(image),
        "specimen": "",
        "collected": "",
    }


def _sidecar_roi(image: Path) -> str:
    for name in (f"{image_stem(image)}.roi.geojson", f"{image_stem(image)}.geojson"):
        candidate = image.with_name(name)
        if candidate.is_file():
            return os.path.abspath(candidate)
    return ""


def _patient_clash_problems(patients: list[str]) -> list[str]:
    """Patient names that differ but become one patient id (``Pat ö`` and ``Pat ä`` are both
    ``Pat__``): their slides would be pooled into one patient's call."""
    names: dict[str, set[str]] = {}
    for patient in patients:
        names.setdefault(sanitise_id(patient), set()).add(patient)
    return [f"patients {', '.join(repr(n) for n in sorted(group))} would all be patient_id '{pid}' "
            "(characters outside A-Z a-z 0-9 . _ - become _); rename them apart"
            for pid, group in sorted(names.items()) if len(group) > 1]


def _folder_duplicate_problems(table: pd.DataFrame) -> list[str]:
    problems = []
    for slide_id, group in table.groupby("slide_id", sort=True):
        if len(group) > 1:
            problems.append(f"these images would all get slide_id '{slide_id}'; rename one: "
                            + ", ".join(group["path"]))
    return problems


def load_slides(spec: str | os.PathLike, *, patient_pattern: str = "") -> pd.DataFrame:
    """Load the slide list from a sample sheet or a folder.

    Parameters
    ----------
    spec : str or path-like
        A sheet (see :func:`read_sheet`) or a folder (see :func:`slides_from_folder`).
    patient_pattern : str, optional
        Folder input only (ignored for a sheet).

    Returns
    -------
    DataFrame
        ``patient_id, slide_id, path, mpp, roi, specimen, collected`` as strings (absolute
        paths, '' for missing optionals), then any extra sheet columns.

    Raises
    ------
    InputError
        If ``spec`` does not exist, or from the sheet or folder checks.
    """
    spec = Path(spec).expanduser()
    if spec.is_dir():
        return slides_from_folder(spec, patient_pattern=patient_pattern)
    if spec.is_file():
        return read_sheet(spec)
    raise InputError([f"{spec}: slides not found (expected a sample sheet or a folder of slides)"])
