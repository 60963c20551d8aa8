"""The cxcr4score console script (argument handling and synth; score runs in tests/workflow)."""

import pandas as pd
import pytest
import tifffile

from cxcr4score import cli


def test_synth_writes_tiles_with_truth(tmp_path, capsys):
    out = tmp_path / "new" / "folder"
    assert cli.main(["synth", "--out", str(out), "--count", "2", "--size", "256", "--seed", "5"]) == 0
    tiles = sorted(out.glob("*.tif"))
    assert [t.name for t in tiles] == ["synthetic_0005.tif", "synthetic_0006.tif"]
    with tifffile.TiffFile(tiles[0]) as tif:
        assert tif.pages[0].shape == (256, 256, 3)
    truth = pd.read_csv(out / "synthetic_0005.truth.csv")
    assert len(truth) > 20 and {"x", "y", "class", "cell_type"} <= set(truth.columns)
    assert "cells" in capsys.readouterr().out


def test_score_rejects_two_images_with_one_slide_id(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        cli.main(["synth", "--out", str(tmp_path / folder), "--size", "128"])
    code = cli.main(["score", str(tmp_path / "a" / "synthetic_0000.tif"), str(tmp_path / "b" / "synthetic_0000.tif"),
                     "--out", str(tmp_path / "o")])
    assert code == 2
    assert "would both be slide 'synthetic_0000'" in capsys.readouterr().err
    same = tmp_path / "a" / "synthetic_0000.tif"
    assert cli.main(["score", str(same), str(same), "--out", str(tmp_path / "o")]) == 2
    assert f"{same}: listed more than once" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_config_file_is_named(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("thresholds: [0.5, 0.1, 0.9]\n")
    assert cli.main(["score", "x.tif", "--out", str(tmp_path), "--config", str(bad)]) == 2
    assert "'thresholds'" in capsys.readouterr().err


def test_help_states_intended_use(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "Research use only" in capsys.readouterr().out


def test_score_shows_progress_on_a_terminal_only(tmp_path):
    """A tile progress bar on a terminal's stderr (a pseudo-terminal here), none in a pipe."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios
    from pathlib import Path

    from cxcr4score import synthetic

    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(200.0, 200.0)), seed=3)
    image = synthetic.write_tile(tile, tmp_path / "t.tif")
    command = [str(Path(sys.executable).with_name("cxcr4score")), "score", str(image), "--out", str(tmp_path / "o")]
    leader, follower = pty.openpty()
    # A terminal 100 columns wide (a new pseudo-terminal has 0, where tqdm draws nothing).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    run = subprocess.run(command, stdout=subprocess.PIPE, stderr=follower, timeout=600)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert run.returncode == 0
    assert b"t: 100%" in shown and b"1/1" in shown and b"tile" in shown, shown[-500:]
    assert b"t: " in run.stdout
