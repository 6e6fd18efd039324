"""Pixel health at the command line and in the config: `inspect --pixels`, `[inspect]`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from exrgen import write_subsampled
from harness import ROOT
from pixel_frames import expected, nan_inf_channels, normal_channels, write_frame, zero_channels

from exrwatchd.config import InspectConfig, load_config
from exrwatchd.errors import ConfigError
from exrwatchd.exr.report import UNHEALTHY_REASONS


def test_reasons_agree_with_the_stage() -> None:
    from exrwatchd.exr.pixels import REASONS

    assert UNHEALTHY_REASONS == REASONS


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exrwatchd", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)  # fmt: skip


def test_inspect_pixels_json_and_summary(tmp_path: Path) -> None:
    broken = write_frame(tmp_path / "broken.exr", nan_inf_channels())
    black = write_frame(tmp_path / "black.exr", zero_channels())
    sub = write_subsampled(tmp_path / "yc.exr")
    proc = run_cli("inspect", "--pixels", "--json", str(broken), str(black), str(sub))
    assert proc.returncode == 0, proc.stderr
    records = {r["path"]: r for r in map(json.loads, proc.stdout.splitlines())}
    stats = records[str(broken)]["pixel_stats"]
    assert (stats["has_nan"], stats["has_inf"], stats["unhealthy"]) == (True, True, ["nan", "inf"])
    (part,) = stats["parts"]
    by_name = {c["name"]: c for c in part["channels"]}
    for name, values in nan_inf_channels().items():
        c = by_name[name]
        assert (c["min"], c["max"], c["mean"], c["nan_count"], c["inf_count"]) == expected(values)
    assert records[str(black)]["pixel_stats"]["is_constant"] is True
    assert records[str(sub)]["pixel_stats"]["unavailable"].startswith("Could not open file")
    assert records[str(sub)]["parts"], "the header record stays"

    plain = run_cli("inspect", "--json", str(broken))
    assert "pixel_stats" not in json.loads(plain.stdout)

    text = run_cli("inspect", "--pixels", str(broken), str(sub)).stdout
    assert "pixels: UNHEALTHY (nan, inf)" in text
    assert "pixel stats unavailable: " in text and "Subsampled" in text
    assert "nan 3 inf 0" in text  # R: three NaNs planted


def test_inspect_without_pixels_does_not_load_openimageio(tmp_path: Path) -> None:
    path = write_frame(tmp_path / "a.exr", normal_channels())
    code = ("import sys; from exrwatchd.cli.main import main; main(['inspect', sys.argv[1]]); "
            "assert 'OpenImageIO' not in sys.modules, 'loaded'")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_config_keys_defaults_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[inspect]\npixel_stats = true\npixel_workers = 3\npixel_queue_size = 5\n")
    assert load_config(cfg, {}).inspect == InspectConfig(True, 3, 5)
    assert InspectConfig() == InspectConfig(False, 1, 64)
    cfg.write_text('[inspect]\npixel_workers = 0\npixel_queue_size = "8"\npixel_stat = true\n')
    with pytest.raises(ConfigError) as info:
        load_config(cfg, {})
    text = str(info.value)
    assert "inspect.pixel_workers: must be >= 1, got 0" in text
    assert 'inspect.pixel_queue_size: expected an integer, got string "8"' in text
    assert 'inspect.pixel_stat: unknown key (did you mean "pixel_stats"?)' in text
    cfg.write_text("[inspect]\npixel_stats = true\n")
    shown = run_cli("check-config", str(cfg))
    assert json.loads(shown.stdout)["inspect"] == {
        "pixel_stats": True, "pixel_workers": 1, "pixel_queue_size": 64,
        "pixel_max_decoded_mb": 32}  # fmt: skip
