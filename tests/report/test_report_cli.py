"""``curate report RUN_DIR``: where the report is and what it found; clear errors without a report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from report_fixtures import CLASS_NAMES, SPRINGER, write_rich_report

from curate.cli import main
from curate.layout import RunLayout


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory whose noise stage wrote the report (the rest of the run is not needed)."""
    root = tmp_path_factory.mktemp("cli") / "run"
    layout = RunLayout(root).ensure()
    write_rich_report(layout.report, root.parent / "images")
    return root


def test_report_prints_the_page_and_a_summary(run_dir: Path, capsys):
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"report: {RunLayout(run_dir).report_index.resolve()}" in out
    assert "12 images in 3 classes; 3 flagged label issues (25.0 %); estimated noise rate 21.7 %" in out
    assert "outliers: 2; near-duplicate groups: 2 (4 images)" in out and "check non_iid: score 0.730: no sign" in out
    noisiest = out.split("noisiest classes")[1].splitlines()
    assert SPRINGER in noisiest[1] and "30.0 %" in noisiest[1] and "1 of 4" in noisiest[1]
    assert CLASS_NAMES[SPRINGER] in out  # printed as plain text; a terminal does not run HTML
    assert "most severe outliers" in out and "n01440764/n01440764_3.png" in out


def test_control_characters_never_reach_the_terminal(tmp_path: Path, capsys):
    layout = RunLayout(tmp_path / "run").ensure()
    write_rich_report(layout.report, tmp_path / "images", title="t\x1b]0;owned\x07",
                      dataset_checks={"x": {"score": 0.5, "summary": "\x1b[2J\x1b[31mred\r\nforged line"}})
    assert main(["report", str(layout.root)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "?[2J?[31mred??forged line" in out
    assert "t?]0;owned?" in out


def test_open_hands_the_page_to_the_browser(run_dir: Path, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("curate.report.summary.webbrowser.open", opened.append)
    assert main(["report", str(run_dir), "--open"]) == 0
    assert opened == [RunLayout(run_dir).report_index.resolve().as_uri()]


def test_a_missing_run_is_an_error_not_a_traceback(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "no run directory" in err and "nowhere" in err and "Traceback" not in err


def test_a_run_without_a_report_says_what_to_run(tmp_path: Path, capsys):
    layout = RunLayout(tmp_path / "run").ensure()
    layout.config.write_text("run: {name: unit}\n")
    assert main(["report", str(layout.root)]) == 2
    err = capsys.readouterr().err
    assert "has no noise report yet" in err and f"curate run {layout.config}" in err and "Traceback" not in err


def test_an_older_report_without_a_summary_still_shows_where_it_is(tmp_path: Path, capsys):
    layout = RunLayout(tmp_path / "run").ensure()
    write_rich_report(layout.report, tmp_path / "images")
    (layout.report / "summary.json").unlink()
    assert main(["report", str(layout.root)]) == 0
    assert "no summary.json" in capsys.readouterr().out


def test_a_broken_summary_is_an_error(tmp_path: Path, capsys):
    layout = RunLayout(tmp_path / "run").ensure()
    write_rich_report(layout.report, tmp_path / "images")
    (layout.report / "summary.json").write_text("{not json")
    assert main(["report", str(layout.root)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_command_imports_no_pandas_or_matplotlib(run_dir: Path):
    probe = (f"from curate.cli import main\nassert main(['report', {str(run_dir)!r}]) == 0\n"
             "import sys\nprint(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = {m.split(".")[0] for m in out.splitlines()[-1].split()}
    assert not loaded & {"pandas", "matplotlib", "torch", "PIL", "jinja2"}



def test_a_reader_that_goes_away_is_no_error(run_dir: Path):
    """`curate report RUN | head -1`: the pipe closes early; no traceback, no "internal error"."""
    script = ("import sys\nfrom curate.cli import main\n"
              "class Closed:\n    def write(self, text): raise BrokenPipeError(32, 'Broken pipe')\n"
              "    def flush(self): pass\n    def fileno(self): return sys.__stdout__.fileno()\n"
              f"sys.stdout = Closed()\nsys.exit(main(['report', {str(run_dir)!r}]))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 141
    assert done.stderr == ""
