"""Every bad input of the command line is a usage message (exit status 2), found before
any training."""

import numpy as np
import pytest

import skntk.__main__ as cli
from skntk.__main__ import main


def _csv(path, cells):
    rng = np.random.default_rng(0)
    lines = ["a,b,label"] + [f"{rng.normal():.3f},{rng.normal():.3f},{i % 2}"
                             for i in range(20)]
    for line, text in cells.items():
        lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if a model is trained."""
    def refuse(*args, **kwargs):
        raise AssertionError("trained before the input was checked")
    monkeypatch.setattr(cli, "_fit_timed", refuse)


def _usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("cell", ["inf", "-inf", "1e999", "nan"])
def test_non_finite_csv_cell_is_a_usage_error(tmp_path, capsys, no_training, cell):
    path = _csv(tmp_path / "x.csv", {5: f"0.5,{cell},1"})
    err = _usage_error(["--csv", path, "--target", "label"], capsys)
    assert "skntk: error:" in err and "'b' (line(s) 5)" in err and "Traceback" not in err


def test_non_finite_numeric_label_is_a_usage_error(tmp_path, capsys, no_training):
    path = _csv(tmp_path / "x.csv", {3: "0.5,0.1,inf"})
    err = _usage_error(["--csv", path, "--target", "label"], capsys)
    assert "'label' (line(s) 3)" in err


def test_csv_with_a_header_only_is_a_usage_error(tmp_path, capsys, no_training):
    path = tmp_path / "x.csv"
    path.write_text("a,b,label\n")
    assert "no data rows" in _usage_error(["--csv", str(path), "--target", "label"], capsys)


def test_features_that_overflow_when_standardised_are_a_usage_error(tmp_path, capsys,
                                                                   no_training):
    # Finite cells whose squares overflow float64: the scaler's variance is infinite.
    path = _csv(tmp_path / "x.csv", {k: f"{(-1) ** k * 1.7e308},0.1,{k % 2}"
                                     for k in range(2, 12)})
    err = _usage_error(["--csv", path, "--target", "label"], capsys)
    assert "standardising the features overflows" in err


@pytest.mark.parametrize("name, match", [
    ("out.xyz", "cannot write '.xyz' files"),
    ("missing/out.png", "does not exist"),
    (".", "is a folder"),
])
def test_plot_path_is_checked_before_training(tmp_path, capsys, no_training, monkeypatch,
                                              name, match):
    monkeypatch.chdir(tmp_path)
    err = _usage_error(["--dataset", "iris", "--plot", name], capsys)
    assert match in err
