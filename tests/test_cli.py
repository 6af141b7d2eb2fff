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
    accuracy = float(rows[1].split()[-4])
    assert 0.5 < accuracy <= 1.0


def test_csv_with_string_target(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=["a", "b", "c", "d"])
    frame["species"] = np.array(["setosa", "versicolor", "virginica"])[iris.target]
    path = tmp_path / "iris.csv"
    frame.to_csv(path, index=False)
    main(["--csv", str(path), "--target", "species", "--max-sgd-epochs", "4",
          "--ntk-phase", "kernel", "--ntk-epochs", "inf"])
    out = capsys.readouterr().out
    assert "features: 4" in out and "classes: 3" in out and len(_rows(out)) == 2


def test_unknown_target_column_is_a_usage_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(SystemExit):
        main(["--csv", str(path), "--target", "zzz"])
