"""Concordance with a pathologist (``cxcr4score bench concordance``).

Compares ``results/eligibility.csv`` with a pathologist's per-patient scores on the user's own
cohort: Spearman, ICC(2,1), Lin's CCC and Bland-Altman for ``h_score`` / ``pct_positive``;
positive / negative percent agreement and Cohen's kappa for the call.

No library at hand (pingouin, statsmodels, scikit-learn are not dependencies) computes ICC(2,1)
or Lin's CCC with their intervals, so they are written out from the published formulae and
tested against published and hand-worked examples.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InputError
from .accuracy import _kappa

#: Continuous measures a pathologist file may give, with their valid ranges.
MEASURES = {"h_score": (0.0, 300.0), "pct_positive": (0.0, 100.0)}

#: Pathologist call words (case-insensitive) and the call each stands for.
CALL_WORDS = {"eligible": "eligible", "positive": "eligible",
              "not_eligible": "not_eligible", "negative": "not_eligible"}

#: Our calls (DESIGN section 4); only the definite ones enter PPA / NPA / kappa.
OUR_CALLS = ("eligible", "not_eligible", "indeterminate", "inadequate")

_MISSING = ("", "na", "nan")
_RESULTS_COLUMNS = ("patient_id", "call", *MEASURES, "metric", "cutoff")
_CONFIDENCE = 0.95


def _read_text_table(path, what):
    """A CSV / TSV file with every value a stripped string (so ``007`` stays ``007``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError([f"{path}: {what} not found"])
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    try:
        with warnings.catch_warnings():  # a row longer than the header would lose values
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                                index_col=False)
    except pd.errors.ParserWarning:
        raise InputError([f"{path}: a row has more values than the header has column names "
                          "(check the separator)"]) from None
    except pd.errors.EmptyDataError:
        raise InputError([f"{path}: the {what} is empty"]) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError([f"{path}: cannot read the {what} ({' '.join(str(exc).split())})"]) from None
    table.columns = [str(c).strip() for c in table.columns]
    return table.apply(lambda column: column.str.strip())


def _number(text, where, column, bounds=None):
    """``text`` as a float (NaN when missing), or an error sentence."""
    if text.lower() in _MISSING:
        return math.nan, None
    try:
        value = float(text)
    except ValueError:
        return math.nan, f"{where}: {column} {text!r} is not a number"
    if not math.isfinite(value):
        return math.nan, f"{where}: {column} {text!r} is not a finite number"
    if bounds and not bounds[0] <= value <= bounds[1]:
        return math.nan, f"{where}: {column} {text!r} is outside {bounds[0]:g}-{bounds[1]:g}"
    return value, None


def _duplicates(path, ids, key="patient_id"):
    rows = pd.Series(range(1, len(ids) + 1), index=ids)
    return [f"{path}: {key} {pid!r} appears in rows {', '.join(map(str, group.tolist()))}"
            for pid, group in rows.groupby(level=0, sort=False) if len(group) > 1]


def read_truth(path, *, key="patient_id", measures=None):
    """Read a pathologist's per-patient scores.

    Parameters
    ----------
    path : str or path-like
        ``.csv`` (comma) or ``.tsv`` / ``.txt`` (tab) with ``patient_id`` and any of ``h_score``
        (0-300), ``pct_positive`` (0-100), ``call`` (``eligible`` / ``positive`` or
        ``not_eligible`` / ``negative``, any case). An empty cell or ``NA`` means not scored;
        other columns are ignored.
    key : str
        The id column (``slide_id`` for scores per slide).
    measures : dict, optional
        Measure columns and their valid ranges, in place of :data:`MEASURES`.

    Returns
    -------
    pandas.DataFrame
        ``key`` (str) and the columns given: measures as float (NaN when not scored),
        ``call`` as 'eligible', 'not_eligible' or ''.

    Raises
    ------
    InputError
        Listing every problem, each naming the file and, for a value, the 1-based data row and
        column: no ``key`` column, none of the scored columns, an empty or duplicate id, a value
        that is not a number or out of range, an unknown call.
    """
    path = Path(path)
    measures = MEASURES if measures is None else measures
    table = _read_text_table(path, "pathologist file")
    given = [c for c in (*measures, "call") if c in table.columns]
    problems = []
    if key not in table.columns:
        problems.append(f"{path}: no {key!r} column")
    if not given:
        problems.append(f"{path}: none of the columns {', '.join((*measures, 'call'))}")
    if table.empty:
        problems.append(f"{path}: has no patient rows")
    if problems:
        raise InputError(problems)
    out = {key: table[key].tolist()}
    out.update({c: [] for c in given})
    for number, row in enumerate(table.to_dict("records"), start=1):
        where = f"{path} row {number}"
        if not row[key]:
            problems.append(f"{where}: empty {key}")
        for column in given:
            if column == "call":
                word = row["call"].lower()
                if word not in CALL_WORDS and word not in _MISSING:
                    problems.append(f"{where}: call {row['call']!r} is not one of "
                                    f"{', '.join(CALL_WORDS)} (or empty)")
                out["call"].append(CALL_WORDS.get(word, ""))
            else:
                value, problem = _number(row[column], where, column, measures[column])
                out[column].append(value)
                problems.extend([problem] if problem else [])
    problems.extend(_duplicates(path, table[key].tolist(), key))
    if problems:
        raise InputError(problems)
    return pd.DataFrame(out)


def read_results(results):
    """Read ``eligibility.csv`` from a results folder (the columns this benchmark uses).

    Parameters
    ----------
    results : str or path-like
        A workflow results folder.

    Returns
    -------
    pandas.DataFrame
        ``patient_id, call, h_score, pct_positive, metric, cutoff``; ``patient_id`` as read,
        scores and cutoff as float (NaN when empty).

    Raises
    ------
    InputError
        If the file is missing or unreadable, lacks one of those columns, or has an unknown call
        or a non-numeric score.
    """
    path = Path(results) / "eligibility.csv"
    table = _read_text_table(path, "eligibility table")
    missing = [c for c in _RESULTS_COLUMNS if c not in table.columns]
    if missing:
        raise InputError([f"{path}: missing column {c!r} (is this a cxcr4score results folder?)"
                          for c in missing])
    table = table[list(_RESULTS_COLUMNS)].copy()
    problems = [f"{path} row {n}: call {call!r} is not one of {', '.join(OUR_CALLS)}"
                for n, call in enumerate(table["call"], start=1) if call not in OUR_CALLS]
    for column in (*MEASURES, "cutoff"):
        parsed = [_number(text, f"{path} row {n}", column) for n, text in enumerate(table[column], start=1)]
        table[column] = [value for value, _ in parsed]
        problems.extend(problem for _, problem in parsed if problem)
    problems.extend(_duplicates(path, table["patient_id"].tolist()))
    if problems:
        raise InputError(problems)
    return table


def _finite(value):
    """JSON-ready number: None for NaN / inf."""
    value = float(value)
    return value if math.isfinite(value) else None


def icc_a1(ratings, confidence=_CONFIDENCE):
    """ICC(2,1): two-way random effects, absolute agreement, single rater.

    Parameters
    ----------
    ratings : (n, k) array_like
        n targets (rows) rated by the same k raters (columns); no missing values.
    confidence : float
        Confidence level of the interval.

    Returns
    -------
    icc, low, high : float
        The coefficient of Shrout & Fleiss (1979) and its interval by McGraw & Wong (1996,
        Table 7, ICC(A,1); the F approximation with Satterthwaite degrees of freedom). NaN when
        undefined (fewer than 2 targets, no variation at all).
    """
    y = np.asarray(ratings, dtype=float)
    n, k = y.shape
    if n < 2 or k < 2:
        return math.nan, math.nan, math.nan
    grand = y.mean()
    ss_rows = k * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((y.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((y - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = max(ss_error, 0.0) / ((n - 1) * (k - 1))  # rounding can make a zero sum slightly negative
    with np.errstate(divide="ignore", invalid="ignore"):
        icc = np.float64(msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        a = k * icc / (n * (1 - icc))
        b = 1 + k * icc * (n - 1) / (n * (1 - icc))
        v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
        tail = (1 + confidence) / 2
        f_upper, f_lower = stats.f.ppf(tail, n - 1, v), stats.f.ppf(tail, v, n - 1)
        spread = k * msc + (k * n - k - n) * mse
        low = n * (msr - f_upper * mse) / (f_upper * spread + n * msr)
        high = n * (f_lower * msr - mse) / (spread + n * f_lower * msr)
    return float(icc), float(low), float(high)


def lin_ccc(x, y, confidence=_CONFIDENCE):
    """Lin's concordance correlation coefficient with its z-transform interval.

    Parameters
    ----------
    x, y : array_like
        Paired measurements (at least 3 pairs for an interval).
    confidence : float
        Confidence level of the interval.

    Returns
    -------
    ccc, low, high : float
        ``2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2)`` with population (1/n) moments
        (Lin 1989); the interval is ``tanh(atanh(ccc) +- z se)`` with the standard error of Lin
        (1989, corrected 2000). NaN where undefined (e.g. both constant; perfect agreement
        has no interval).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = x.size
    sx2, sy2 = x.var(), y.var()
    sxy = ((x - x.mean()) * (y - y.mean())).mean()
    shift2 = (x.mean() - y.mean()) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        ccc = np.float64(2 * sxy) / (sx2 + sy2 + shift2)
        r = sxy / np.sqrt(sx2 * sy2)
        u2 = shift2 / np.sqrt(sx2 * sy2)  # squared location shift relative to scale
        var_z = ((1 - r**2) * ccc**2 / ((1 - ccc**2) * r**2)
                 + 2 * ccc**3 * (1 - ccc) * u2 / (r * (1 - ccc**2) ** 2)
                 - ccc**4 * u2**2 / (2 * r**2 * (1 - ccc**2) ** 2)) / (n - 2)
        half = stats.norm.ppf((1 + confidence) / 2) * np.sqrt(var_z)
        low, high = np.tanh(np.arctanh(ccc) - half), np.tanh(np.arctanh(ccc) + half)
    return float(ccc), float(low), float(high)


def spearman(x, y, confidence=_CONFIDENCE):
    """Spearman's rho with a Fisher z interval (standard error sqrt(1.06 / (n - 3)), Fieller,
    Hartley & Pearson 1957); NaN where undefined (a constant side, fewer than 4 pairs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        rho = float(stats.spearmanr(x, y).statistic)
    n = len(x)
    if n < 4 or not math.isfinite(rho):
        return rho, math.nan, math.nan
    half = stats.norm.ppf((1 + confidence) / 2) * math.sqrt(1.06 / (n - 3))
    with np.errstate(divide="ignore"):
        z = np.arctanh(rho)
    return rho, float(np.tanh(z - half)), float(np.tanh(z + half))


def bland_altman(ours, truth, confidence=_CONFIDENCE):
    """Bland-Altman bias and 95% limits of agreement of ``ours - truth`` (at least 2 pairs).

    Returns
    -------
    dict
        ``bias`` (mean difference), ``sd`` (sample SD of the differences), ``loa_low`` /
        ``loa_high`` (bias -+ 1.96 sd), and ``*_ci`` intervals of the bias and of each limit
        (t with n-1 degrees of freedom; standard errors sd/sqrt(n) and sqrt(3 sd^2 / n),
        Bland & Altman 1986).
    """
    d = np.asarray(ours, dtype=float) - np.asarray(truth, dtype=float)
    n = d.size
    bias, sd = d.mean(), d.std(ddof=1)
    t = stats.t.ppf((1 + confidence) / 2, n - 1)
    se_bias, se_limit = sd / math.sqrt(n), math.sqrt(3 * sd**2 / n)
    result = {"bias": bias, "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd}
    result["bias_ci"] = [bias - t * se_bias, bias + t * se_bias]
    for key in ("loa_low", "loa_high"):
        result[f"{key}_ci"] = [result[key] - t * se_limit, result[key] + t * se_limit]
    return result


def continuous_agreement(ours, truth):
    """Every continuous figure of one measure: n, Spearman, ICC(2,1), CCC, Bland-Altman.

    Parameters
    ----------
    ours, truth : array_like
        Paired values of the same patients (pairs with a NaN are left out).

    Returns
    -------
    dict
        JSON-ready (None for undefined values); intervals as [low, high].
    """
    ours, truth = np.asarray(ours, dtype=float), np.asarray(truth, dtype=float)
    keep = np.isfinite(ours) & np.isfinite(truth)
    ours, truth = ours[keep], truth[keep]
    result = {"n": int(keep.sum())}
    if result["n"] < 3:
        return result
    for name, (value, low, high) in {
        "spearman": spearman(ours, truth),
        "icc_2_1": icc_a1(np.column_stack([ours, truth])),
        "ccc": lin_ccc(ours, truth),
    }.items():
        result[name], result[f"{name}_ci"] = _finite(value), [_finite(low), _finite(high)]
    for key, value in bland_altman(ours, truth).items():
        result[key] = [_finite(v) for v in value] if isinstance(value, list) else _finite(value)
    return result


def _proportion(k, n, confidence=_CONFIDENCE):
    """k / n with its Wilson interval (None when n is 0)."""
    if n == 0:
        return None, [None, None]
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return k / n, [float(ci.low), float(ci.high)]


def call_agreement(ours, truth):
    """Agreement of our calls with the pathologist's, the pathologist as reference.

    Parameters
    ----------
    ours : sequence of str
        Our calls (``OUR_CALLS``).
    truth : sequence of str
        The pathologist's: 'eligible', 'not_eligible' or '' (no call; the pair is left out).

    Returns
    -------
    dict
        ``table`` (pathologist call -> our call -> count, every pair with a pathologist call),
        ``n`` (pairs where both calls are definite), ``ppa`` = eligible by both / eligible by
        the pathologist, ``npa`` = not_eligible by both / not_eligible by the pathologist,
        ``overall`` (each with a Wilson interval ``*_ci``), and unweighted Cohen's ``kappa``
        (None when undefined). Our indeterminate and inadequate calls appear in ``table`` only,
        and in ``definite`` (share of pathologist-called patients we called definitely) and
        ``overall_all_calls`` (agreement over all of them, a non-definite call counting as a
        disagreement), each with its interval.
    """
    pairs = pd.DataFrame({"ours": list(ours), "truth": list(truth)})
    pairs = pairs[pairs["truth"] != ""]
    table = {t: {o: int(((pairs["truth"] == t) & (pairs["ours"] == o)).sum()) for o in OUR_CALLS}
             for t in ("eligible", "not_eligible")}
    both, neither = table["eligible"]["eligible"], table["not_eligible"]["not_eligible"]
    n_pos = both + table["eligible"]["not_eligible"]
    n_neg = neither + table["not_eligible"]["eligible"]
    result = {"table": table, "n": n_pos + n_neg}
    # Sending hard cases to indeterminate / inadequate would flatter PPA and NPA: the share of
    # definite calls, and the agreement counting every other call as a disagreement, say so.
    for name, k, n in (("ppa", both, n_pos), ("npa", neither, n_neg), ("overall", both + neither, n_pos + n_neg),
                       ("definite", n_pos + n_neg, len(pairs)), ("overall_all_calls", both + neither, len(pairs))):
        result[name], result[f"{name}_ci"] = _proportion(k, n)
    definite = pairs[pairs["ours"].isin(["eligible", "not_eligible"])]
    codes = [(definite[side] == "eligible").to_numpy(int) for side in ("truth", "ours")]
    # With two classes the quadratic weights are the unweighted ones, so this is Cohen's kappa;
    # it is undefined when both raters give one and the same call to every patient.
    defined = len(definite) and len(np.unique(np.concatenate(codes))) == 2
    result["kappa"] = _kappa(*codes, n_classes=2) if defined else None
    return result


def concordance(truth, results):
    """Compare a pathologist's table with our eligibility table.

    Parameters
    ----------
    truth : pandas.DataFrame
        From :func:`read_truth`.
    results : pandas.DataFrame
        From :func:`read_results`.

    Returns
    -------
    dict
        ``matched`` (patients in both), ``only_truth`` / ``only_ours`` (patient ids left out),
        ``metric`` / ``cutoff`` (our eligibility rule), one :func:`continuous_agreement` per
        measure the pathologist gave, ``calls`` (:func:`call_agreement`) when they gave calls.

    Raises
    ------
    InputError
        If no patient is in both tables.
    """
    merged = truth.merge(results, on="patient_id", suffixes=("_truth", ""), validate="one_to_one")
    result = {
        "matched": len(merged),
        "only_truth": sorted(set(truth["patient_id"]) - set(results["patient_id"])),
        "only_ours": sorted(set(results["patient_id"]) - set(truth["patient_id"])),
        "metric": results["metric"].iloc[0] if len(results) else None,
        "cutoff": _finite(results["cutoff"].iloc[0]) if len(results) else None,
    }
    if merged.empty:
        raise InputError(["no patient_id is in both the pathologist file and eligibility.csv "
                          "(check that the ids are spelled the same way)"])
    for measure in MEASURES:
        if measure in truth.columns:
            result[measure] = continuous_agreement(merged[measure], merged[f"{measure}_truth"])
    if "call" in truth.columns:
        result["calls"] = call_agreement(merged["call"], merged["call_truth"])
    return result


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def _with_ci(result, key, digits=3):
    low, high = result.get(f"{key}_ci", [None, None])
    return f"{_fmt(result.get(key), digits)} ({_fmt(low, digits)} to {_fmt(high, digits)})"


def format_report(result):
    """The result of :func:`concordance` as a plain-text table (95% intervals in brackets)."""
    lines = [f"{result['matched']} patients in both files; our rule: {result['metric']} >= {result['cutoff']}"]
    for measure in MEASURES:
        if measure not in result:
            continue
        m = result[measure]
        lines.append(f"\n{measure} (ours - pathologist), n = {m['n']}")
        if m["n"] < 3:
            lines.append("  fewer than 3 pairs: no figures")
            continue
        lines += [f"  Spearman rho          {_with_ci(m, 'spearman')}",
                  f"  ICC(2,1)              {_with_ci(m, 'icc_2_1')}",
                  f"  Lin's CCC             {_with_ci(m, 'ccc')}",
                  f"  Bland-Altman bias     {_with_ci(m, 'bias', 1)}, SD {_fmt(m['sd'], 1)}",
                  f"  limits of agreement   {_with_ci(m, 'loa_low', 1)} and {_with_ci(m, 'loa_high', 1)}"]
    if "calls" in result:
        c = result["calls"]
        lines.append(f"\ncalls (pathologist as reference), n = {c['n']} with both calls definite")
        lines.append("  pathologist \\ ours  " + "".join(f"{o:>14}" for o in OUR_CALLS))
        lines += [f"  {t:<19} " + "".join(f"{c['table'][t][o]:>14}" for o in OUR_CALLS) for t in c["table"]]
        lines += [f"  PPA                   {_with_ci(c, 'ppa')}",
                  f"  NPA                   {_with_ci(c, 'npa')}",
                  f"  overall agreement     {_with_ci(c, 'overall')}",
                  f"  definite calls        {_with_ci(c, 'definite')}",
                  f"  agreement, all calls  {_with_ci(c, 'overall_all_calls')}",
                  f"  Cohen's kappa         {_fmt(c['kappa'])}"]
    return "\n".join(lines)


def run(truth_path, results_dir):
    """Read both tables, warn (stderr) about patients in only one, and compare them.

    Parameters
    ----------
    truth_path : path-like or None
        The pathologist file (``--truth``).
    results_dir : path-like
        The workflow results folder (``--results``).

    Returns
    -------
    dict
        :func:`concordance`, with the two paths added.

    Raises
    ------
    InputError
        If ``truth_path`` is None or either file is bad (see :func:`read_truth`,
        :func:`read_results`).
    """
    if truth_path is None:
        raise InputError(["bench concordance needs --truth FILE (the pathologist's scores per patient)"])
    truth, ours = read_truth(truth_path), read_results(results_dir)
    result = {"truth": str(truth_path), "results": str(results_dir), **concordance(truth, ours)}
    for key, where in (("only_truth", truth_path), ("only_ours", Path(results_dir) / "eligibility.csv")):
        if result[key]:
            print(f"warning: {len(result[key])} patient(s) only in {where}, left out: "
                  f"{', '.join(result[key])}", file=sys.stderr)
    return result
