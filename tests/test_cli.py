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


def _write_blobs_csv(path, labels, label_first=False, encoding="utf-8"):
    rng = np.random.RandomState(0)
    header = ["label", "x1", "x2"] if label_first else ["x1", "x2", "label"]
    lines = [",".join(header)]
    for label in labels:
        x = [f"{v:.4f}" for v in rng.normal(size=2) + 3 * (ord(label) - ord("a"))]
        lines.append(",".join([label, *x] if label_first else [*x, label]))
    path.write_text("\n".join(lines) + "\n", encoding=encoding)


def test_class_with_a_single_row_is_a_usage_error_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "one_c.csv"
    _write_blobs_csv(path, ["a"] * 20 + ["b"] * 19 + ["c"])
    with pytest.raises(SystemExit) as exit_info:
        main(["--csv", str(path), "--target", "label"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "skntk: error: the stratified 75%/25% train/test split needs at least 2 rows of "
        "every class; class 'c' has 1 row (of 40 rows). Add rows of that class or remove "
        "its row.")


def test_more_classes_than_test_rows_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "many.csv"
    _write_blobs_csv(path, list("aabbccddee"))  # 3 test rows for 5 classes
    with pytest.raises(SystemExit) as exit_info:
        main(["--csv", str(path), "--target", "label"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("skntk: error: cannot split the 10 rows into a stratified 75%/25% "
                          "train/test split with every one of the 5 classes in both parts: ")
    assert "test_size = 3 should be greater or equal to the number of classes = 5" in err


def test_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path, capsys):
    path = tmp_path / "excel.csv"
    _write_blobs_csv(path, ["a", "b", "c"] * 10, label_first=True, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbflabel,")
    assert main(["--csv", str(path), "--target", "label", "--max-sgd-epochs", "2",
                 "--ntk-epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "features: 2  classes: 3" in out and len(_rows(out)) == 2


def test_csv_that_is_not_utf8_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "latin1.csv"
    _write_blobs_csv(path, ["a", "b"] * 10)
    path.write_bytes(path.read_bytes().replace(b"x1", "é".encode("latin-1")))
    with pytest.raises(SystemExit) as exit_info:
        main(["--csv", str(path), "--target", "label"])
    assert exit_info.value.code == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_generated_interaction_dataset_runs(capsys):
    assert main(["--dataset", "interaction", "--max-sgd-epochs", "3", "--ntk-epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "interaction (generated" in out and "train: 3000" in out and "features: 30" in out
    rows = _rows(out)
    assert len(rows) == 2 and all(row.split()[-1].endswith("x") for row in rows)


def test_real_valued_target_runs_the_regressor_with_the_budget_shown(capsys):
    assert main(["--dataset", "diabetes", "--max-sgd-epochs", "4", "--ntk-epochs", "2",
                 "--parameterization", "ntk"]) == 0
    out = capsys.readouterr().out
    assert "target: real-valued (regression)" in out and "parameterization: ntk" in out
    header = next(line for line in out.splitlines() if line.startswith("method"))
    assert "test R2" in header and "SGD budget" in header
    rows = [line.split() for line in out.splitlines()
            if line.startswith(("plain SGD", "hybrid (kernel_velocity"))]
    assert len(rows) == 2
    assert rows[0][2] == "4"  # the SGD budget column of "plain SGD"
    assert "(max_sgd_epochs=4)" in out


def test_task_regression_on_a_csv_with_integer_targets(tmp_path, capsys):
    rng = np.random.RandomState(0)
    lines = ["x1,x2,y"] + [f"{a:.3f},{b:.3f},{int(3 * a + b)}"
                           for a, b in rng.normal(size=(40, 2))]
    path = tmp_path / "counts.csv"
    path.write_text("\n".join(lines) + "\n")
    assert main(["--csv", str(path), "--target", "y", "--task", "regression",
                 "--max-sgd-epochs", "2", "--ntk-epochs", "2"]) == 0
    assert "test R2" in capsys.readouterr().out
