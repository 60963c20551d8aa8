"""Pixel size: from the image's metadata (OME-XML, Aperio description, TIFF resolution tags,
PNG pHYs, or what OpenSlide / slideio report), else the sample sheet, else the configured default.

Placeholder resolutions that image software writes (72 and 96 dpi, 1 pixel per unit) are not
measurements and are ignored; anisotropic pixels are refused.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import tifffile

from .errors import InputError


#: x and y pixel sizes may differ by this fraction before an image counts as anisotropic.
ANISOTROPY_TOLERANCE = 0.01
#: An image within this fraction of the analysis pixel size is used as it is (DESIGN section 3).
MPP_TOLERANCE = 0.05
#: Resolutions (dots per inch) that image software writes as placeholders, not measurements.
_PLACEHOLDER_DPI = (72.0, 96.0)
_MICRONS_PER_INCH = 25400.0
_MICRONS_PER_CM = 10000.0
#: OME-XML length units -> micrometres (units without a physical length are not listed).
_OME_UNIT_UM = {
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "Å": 1e-4, "pm": 1e-6,
    "mm": 1e3, "cm": 1e4, "m": 1e6, "in": _MICRONS_PER_INCH,
}
_APERIO_MPP_RE = re.compile(r"\|\s*MPP\s*=\s*([-+0-9.eE]+)")


def tiff_mpp(
    path: Path, tif: tifffile.TiffFile, index: int, level: tifffile.TiffPageSeries
) -> tuple[float | None, str | None]:
    """Pixel size of series ``index`` level 0: OME-XML, else Aperio description, else tags."""
    if tif.is_ome:
        xy = _ome_physical_size(tif.ome_metadata, index)
        if xy is not None:
            return _isotropic(path, *xy, "OME-XML PhysicalSizeX/Y"), "ome"
    if tif.is_svs:
        match = _APERIO_MPP_RE.search(level.keyframe.description or "")
        if match and is_positive_number(match.group(1)):
            return float(match.group(1)), "svs"
    xy = _tag_physical_size(level.keyframe)
    if xy is not None:
        return _isotropic(path, *xy, "TIFF XResolution/YResolution"), "tiff"
    return None, None


def _ome_physical_size(xml: str | None, image_index: int) -> tuple[float, float] | None:
    """PhysicalSizeX/Y of one OME Image in micrometres, or None when absent or not a length."""
    try:
        root = ET.fromstring(xml or "")
    except ET.ParseError:
        return None
    pixels = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"]
    if not pixels:
        return None
    attrs = pixels[image_index if image_index < len(pixels) else 0].attrib
    sizes = []
    for axis in ("X", "Y"):
        value, unit = attrs.get(f"PhysicalSize{axis}"), attrs.get(f"PhysicalSize{axis}Unit", "µm")
        if not is_positive_number(value) or unit not in _OME_UNIT_UM:
            return None
        sizes.append(float(value) * _OME_UNIT_UM[unit])
    return sizes[0], sizes[1]


def _tag_physical_size(page: tifffile.TiffPage) -> tuple[float, float] | None:
    """Pixel size in micrometres from XResolution/YResolution, or None for placeholders."""
    tags = page.tags
    if "XResolution" not in tags or "ResolutionUnit" not in tags:
        return None
    unit = tifffile.RESUNIT(tags["ResolutionUnit"].value)
    um_per_unit = {tifffile.RESUNIT.INCH: _MICRONS_PER_INCH,
                   tifffile.RESUNIT.CENTIMETER: _MICRONS_PER_CM}.get(unit)
    x_res = _rational(tags["XResolution"].value)
    y_res = _rational(tags["YResolution"].value) if "YResolution" in tags else x_res
    if um_per_unit is None or x_res <= 1 or y_res <= 0:
        return None
    if _is_placeholder_dpi(x_res * _MICRONS_PER_INCH / um_per_unit):
        return None
    return um_per_unit / x_res, um_per_unit / y_res


def reader_mpp(path: Path, x_um, y_um, source: str) -> tuple[float | None, str | None]:
    """Pixel size a slide library reports (OpenSlide's ``openslide.mpp-x/y``, slideio's scene
    resolution), or (None, None) when it is absent, not positive, or a placeholder resolution
    (72 / 96 dpi or at most 1 pixel per centimetre, which OpenSlide passes on from a plain
    TIFF's tags).

    Parameters
    ----------
    path : Path
        The slide, for messages.
    x_um, y_um : float, str or None
        Micrometres per pixel along x and y.
    source : {'openslide', 'slideio'}
        Returned as the source, and named in the anisotropy message.

    Returns
    -------
    mpp : float or None
    source : str or None

    Raises
    ------
    InputError
        x and y differ by more than 1% (anisotropic pixels).
    """
    if not (is_positive_number(x_um) and is_positive_number(y_um)):
        return None, None
    x_um, y_um = float(x_um), float(y_um)
    if _is_placeholder_dpi(_MICRONS_PER_INCH / x_um) or x_um >= _MICRONS_PER_CM:
        return None, None
    return _isotropic(path, x_um, y_um, f"{source} pixel size"), source


def png_mpp(path: Path, dpi) -> tuple[float | None, str | None]:
    """Pixel size from a PNG's pHYs resolution in dots per inch (x, y), or (None, None) for a
    placeholder or non-positive resolution."""
    x_dpi, y_dpi = (float(v) for v in dpi)
    if _is_placeholder_dpi(x_dpi) or x_dpi <= 0 or y_dpi <= 0:
        return None, None
    return _isotropic(path, _MICRONS_PER_INCH / x_dpi, _MICRONS_PER_INCH / y_dpi, "PNG pHYs"), "png"


def _rational(value) -> float:
    if isinstance(value, tuple):
        return value[0] / value[1] if value[1] else 0.0
    return float(value)


def _is_placeholder_dpi(dpi: float) -> bool:
    return any(abs(dpi - placeholder) < 0.5 for placeholder in _PLACEHOLDER_DPI)


def _isotropic(path: Path, x_um: float, y_um: float, source: str) -> float:
    """Mean of x and y pixel size; InputError when they differ by more than 1%."""
    if abs(x_um - y_um) > ANISOTROPY_TOLERANCE * min(x_um, y_um):
        raise InputError([
            f"{path}: pixels are not square ({source}: x {x_um:.6g} um, y {y_um:.6g} um); "
            "anisotropic images are not supported"
        ])
    return (x_um + y_um) / 2


def is_positive_number(text) -> bool:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and value > 0


def resolve_mpp(
    image_mpp: float | None, sheet_mpp: float | str | None, default_mpp: float
) -> tuple[float, str, str | None]:
    """Choose the pixel size: image metadata, else the sheet, else the default.

    Parameters
    ----------
    image_mpp : float or None
        From the image metadata (:attr:`SlideImage.mpp`).
    sheet_mpp : float, str or None
        The sheet's ``mpp`` value; '' or None when not given.
    default_mpp : float
        Config ``default_mpp``.

    Returns
    -------
    mpp : float
        Micrometres per pixel.
    source : {'metadata', 'sheet', 'default'}
    warning : str or None
        A QC warning when the default was assumed, or when the sheet disagrees with the
        metadata by more than 5% (the metadata wins).

    Raises
    ------
    ValueError
        If ``sheet_mpp`` is given but not a positive number, or ``default_mpp`` is not positive.
    """
    if sheet_mpp is not None and str(sheet_mpp).strip() != "":
        if not is_positive_number(sheet_mpp):
            raise ValueError(f"sheet mpp must be a positive number, got {sheet_mpp!r}")
        sheet_mpp = float(sheet_mpp)
    else:
        sheet_mpp = None
    if not is_positive_number(default_mpp):
        raise ValueError(f"default_mpp must be a positive number, got {default_mpp!r}")
    if image_mpp is not None:
        warning = None
        if sheet_mpp is not None and abs(sheet_mpp - image_mpp) > MPP_TOLERANCE * image_mpp:
            warning = (f"sheet mpp {sheet_mpp:g} um/px differs from the image metadata "
                       f"{image_mpp:.4g} um/px; the metadata is used")
        return float(image_mpp), "metadata", warning
    if sheet_mpp is not None:
        return sheet_mpp, "sheet", None
    return float(default_mpp), "default", (
        f"pixel size not in the image metadata or the sheet; assumed default_mpp "
        f"{float(default_mpp):g} um/px"
    )
