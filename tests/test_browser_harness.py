"""Tests of the headless-browser harness in tests/browser.py: that it tells a loaded image from
a broken one, sees inline SVG, and tells a rendered page from a blank one."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from . import browser

RED = (255, 0, 0)


def _png_data_uri(width=60, height=40, rgb=RED):
    image = np.empty((height, width, 3), np.uint8)
    image[:] = rgb
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


def _write_page(tmp_path, body):
    path = tmp_path / "page.html"
    path.write_text(f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>t</title></head>'
                    f"<body>{body}</body></html>\n", encoding="utf-8")
    return path


def _load(tmp_path, body):
    workdir = tmp_path / "work"
    workdir.mkdir()
    return browser.load_page(_write_page(tmp_path, body), workdir)


def test_broken_images_are_the_garbage_and_the_missing_file(tmp_path):
    valid = _png_data_uri()
    garbage = "data:image/png;base64," + base64.b64encode(b"not a png" * 20).decode("ascii")
    page = _load(tmp_path, f'<img src="{valid}"><img src="{garbage}"><img src="missing.png">')
    assert [image["src"] for image in page.images] == [valid[:80], garbage[:80], "missing.png"]
    assert page.images[0]["naturalWidth"] == 60 and page.images[0]["naturalHeight"] == 40
    assert browser.broken_images(page) == [garbage[:80], "missing.png"]


def test_valid_page_renders_its_figures(tmp_path):
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80">'
           '<rect width="120" height="80" fill="#0000ff"/></svg>')
    page = _load(tmp_path, f'<h1>Report</h1><img src="{_png_data_uri()}">{svg}')
    assert browser.broken_images(page) == []
    assert page.svgs == 1
    assert "<h1>Report</h1>" in page.dom
    assert "browser-check" not in page.dom
    assert page.screenshot.dtype == np.uint8 and page.screenshot.shape == (4000, 1400, 3)
    assert not browser.is_blank(page.screenshot)
    # The figures themselves are on screen: the red PNG and the blue SVG rectangle.
    colours = page.screenshot.reshape(-1, 3)
    assert np.count_nonzero((colours == RED).all(axis=1)) >= 60 * 40
    assert np.count_nonzero((colours == (0, 0, 255)).all(axis=1)) >= 120 * 80


def test_empty_page_is_blank(tmp_path):
    page = _load(tmp_path, "")
    assert page.images == [] and page.svgs == 0
    assert browser.is_blank(page.screenshot)


def test_no_browser_and_not_root_skips_with_the_reason(monkeypatch):
    monkeypatch.setattr(browser.shutil, "which",
                        lambda name: "/usr/bin/apt-get" if name == "apt-get" else None)
    monkeypatch.setattr(browser.os, "geteuid", lambda: 1000)
    browser._find_or_install.cache_clear()
    try:
        with pytest.raises(pytest.skip.Exception, match="not root"):
            browser.chromium_executable()
    finally:
        browser._find_or_install.cache_clear()
