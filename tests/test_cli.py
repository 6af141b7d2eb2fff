"""The command line on bundled and CSV data."""

import numpy as np
import pytest
from sklearn.datasets import load_iris

from skntk.__main__ import main


def _rows(out):
    return [line for line in out.splitlines() if line.startswith(("plain SGD", "hybrid"))]


def test_bundled_dataset_prints_both_methods(capsys):
    assert main(["--dataset", "iris", "--max-sgd-epochs", "5", "--ntk-epochs", "3"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert len(rows) == 2
    accuracy = float(rows[1].split()[-5])
    assert 0.5 < accuracy <= 1.0
    # The last column is the wall time relative to plain SGD (the first row).
    assert rows[0].split()[-1] == "1.00x" and rows[1].split()[-1].endswith("x")


def _write_iris_csv(path, extra_text_column=False):
    iris = load_iris()
    names = np.array(["setosa", "versicolor", "virginica"])[iris.target]
    header = "a,b,c,d," + ("colour," if extra_text_column else "") + "species"
    lines = [header] + [
        ",".join(map(str, row)) + (",red" if extra_text_column else "") + f",{label}"
        for row, label in zip(iris.data, names)]
    path.write_text("\n".join(lines) + "\n")


def test_csv_with_string_target(tmp_path, capsys):
    path = tmp_path / "iris.csv"
    _write_iris_csv(path, extra_text_column=True)
    main(["--csv", str(path), "--target", "species", "--max-sgd-epochs", "4",
          "--ntk-phase", "kernel", "--ntk-epochs", "inf"])
    out = capsys.readouterr().out
    assert "ignored non-numeric column(s): colour" in out
    assert "features: 4" in out and "classes: 3" in out and len(_rows(out)) == 2


def test_csv_with_empty_cells_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "x.csv"
    path.write_text("a,b,label\n1,2,x\n3,,y\n")
    with pytest.raises(SystemExit):
        main(["--csv", str(path), "--target", "label"])
    assert "empty cells on line(s) 3" in capsys.readouterr().err


def test_invalid_parameter_is_a_usage_error_not_a_traceback(capsys):
    with pytest.raises(SystemExit):
        main(["--dataset", "iris", "--max-sgd-epochs", "2", "--ntk-epochs", "2.5"])
    assert "ntk_epochs" in capsys.readouterr().err


def test_unknown_target_column_is_a_usage_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(SystemExit):
        main(["--csv", str(path), "--target", "zzz"])
