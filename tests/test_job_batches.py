"""Which images the workflow measures and scores several per job (cxcr4score.job_batches)."""

from cxcr4score.job_batches import small_image_batches


def _file(folder, name, size):
    path = folder / name
    path.write_bytes(b"\0" * size)
    return str(path)


def test_small_single_file_images_are_batched_in_sheet_order(tmp_path):
    paths = {f"S{k}": _file(tmp_path, f"s{k}.tif", 1000) for k in range(5)}
    assert small_image_batches(paths, max_mb=0.001, per_job=2) == {"1": ["S0", "S1"], "2": ["S2", "S3"], "3": ["S4"]}


def test_large_missing_and_companion_file_images_are_not_batched(tmp_path):
    paths = {
        "big": _file(tmp_path, "big.svs", 2001),
        "small": _file(tmp_path, "small.SVS", 2000),
        "jpeg": _file(tmp_path, "field.jpg", 10),
        "mirax": _file(tmp_path, "slide.mrxs", 10),  # its pixels are in the companion folder
        "vsi": _file(tmp_path, "slide.vsi", 10),
        "dicom": _file(tmp_path, "level.dcm", 10),
        "missing": str(tmp_path / "missing.tif"),
    }
    assert small_image_batches(paths, max_mb=0.002, per_job=8) == {"1": ["small", "jpeg"]}


def test_zero_batches_nothing(tmp_path):
    assert small_image_batches({"S": _file(tmp_path, "s.tif", 0)}, max_mb=0, per_job=8) == {}
