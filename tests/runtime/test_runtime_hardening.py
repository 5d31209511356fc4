"""What a hostile or careless user can hand the runtime: extreme numbers, damaged signature values, a network
that returns NaN. Each ends in the training-equal answer or one clear error, never a silent wrong prediction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_runtime_package import IMAGE_PREP, TABLE_PREP, image_package, table_package

from shipml.errors import DataError, ExportError, ShipmlWarning
from shipml.runtime import Package, Predictor
from shipml.runtime.format import write_manifest


def test_extreme_numbers_predict_as_missing_values(tmp_path: Path) -> None:
    """inf, -inf and 1e300 are missing values at training time (float32 cannot hold them); the same at predict:
    the row predicts exactly like the row with that cell empty, with real probabilities."""
    pkg = Package.open(table_package(tmp_path / "pkg")[0])
    csv = tmp_path / "rows.csv"
    csv.write_text("x,y,colour\ninf,1,red\n-inf,1,red\n1e300,1,red\n,1,red\n-5e38,1,red\n2,1e300,blue\n2,,blue\n")
    out = pkg.predict(csv)
    probs = out[["proba:no", "proba:yes"]].to_numpy()
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1)
    for i in (0, 1, 2, 4):
        np.testing.assert_array_equal(probs[i], probs[3])  # each equals the empty cell
    np.testing.assert_array_equal(probs[5], probs[6])


def _edit_signature(folder: Path, edit: Any) -> None:
    sig = json.loads((folder / "signature.json").read_text())
    edit(sig)
    (folder / "signature.json").write_text(json.dumps(sig))
    write_manifest(folder)  # a consistent but wrong package: only the value checks can catch it


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda s: s["preprocessing"].update(mean=["a", "b", "c"]), r"preprocessing\.mean is \['a'"),
        (lambda s: s["preprocessing"].update(std=[0.2, 0.0, 0.3]), r"preprocessing\.std .*positive"),
        (lambda s: s["preprocessing"].update(std=[0.2, 0.3]), r"preprocessing\.std .*list of 3"),
        (lambda s: s["preprocessing"].update(scale="1/255"), r"preprocessing\.scale"),
        (lambda s: s["preprocessing"].update(size=[6]), r"preprocessing\.size"),
        (lambda s: s["preprocessing"].update(channels=2), r"preprocessing\.channels"),
        (lambda s: s.update(classes=["a", 1, "c"]), "classes"),
        (lambda s: s.update(decision={"strategy": "max_f1", "positive": 1, "threshold": 0.5}), "binary"),
    ],
    ids=["mean-strings", "std-zero", "std-length", "scale-text", "size", "channels", "class-number", "decision"],
)
def test_signature_values_are_checked_on_open(tmp_path: Path, edit: Any, message: str) -> None:
    folder = image_package(tmp_path / "pkg")[0]
    _edit_signature(folder, edit)
    with pytest.raises(ExportError, match=message):
        Package.open(folder)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda s: s["preprocessing"]["numeric"][0].update(std=0), r"numeric\[0\] \(x\) std"),
        (lambda s: s["preprocessing"]["numeric"][1].update(mean="zero"), r"numeric\[1\] \(y\) median/mean"),
        (lambda s: s["preprocessing"]["categorical"][0].update(categories=[1, 2]), r"categorical\[0\]"),
        (lambda s: s["output_transform"].update(std=0.0), "output_transform"),
    ],
    ids=["std-zero", "mean-text", "categories-numbers", "target-std-zero"],
)
def test_table_signature_values_are_checked(tmp_path: Path, edit: Any, message: str) -> None:
    folder = table_package(tmp_path / "pkg", target={"mean": 3.0, "std": 2.0})[0]
    _edit_signature(folder, edit)
    with pytest.raises(ExportError, match=message):
        Package.open(folder)


def test_non_finite_outputs_are_never_predicted(tmp_path: Path) -> None:
    spec = {"kind": "classification", "data_kind": "table", "classes": ["no", "yes"],
            "output_transform": {"kind": "softmax"}, "decision": None, "preprocessing": TABLE_PREP}
    predictor = Predictor(spec, tmp_path, where="test")
    rows = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.0, 0.0, 0.0], "colour": ["red", "red", "blue"]})

    def network(feeds: dict[str, np.ndarray]) -> np.ndarray:
        out = np.zeros((len(feeds["num"]), 2), np.float32)
        out[feeds["num"][:, 0] > 0.6] = np.nan  # x = 3 scales to (3 - 1) / 2 = 1.0
        return out

    with pytest.raises(DataError, match=r"non-finite outputs for 1 of 3 inputs \(row 2\)"):
        predictor.predict(rows, network)
    ok = predictor.predict(rows.iloc[:2], network)
    assert ok["prediction"].tolist() == ["no", "no"] and np.allclose(ok["proba:no"], 0.5)


def test_image_prep_fixture_is_valid(tmp_path: Path) -> None:
    """The fixture the value checks edit is itself accepted (so each failure above is the edit's doing)."""
    assert Package.open(image_package(tmp_path / "pkg", prep=dict(IMAGE_PREP))[0]).data_kind == "images"


def test_unreadable_image_paths_are_skipped_and_listed(tmp_path: Path) -> None:
    """A list of paths with a missing and a garbage file: the readable ones predict, the rest are listed (a
    ShipmlWarning says so); nothing readable at all is one clear error."""
    from PIL import Image

    pkg = Package.open(image_package(tmp_path / "pkg")[0])
    Image.fromarray(np.zeros((20, 10, 3), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "z.PNG").write_text("garbage")
    paths = [tmp_path / "x.png", tmp_path / "missing.png", tmp_path / "z.PNG"]
    with pytest.warns(ShipmlWarning, match="skipped 2 unreadable"):
        out = pkg.predict(paths)
    assert out["source"].tolist() == [str(paths[0])]
    assert [s for s, _ in out.attrs["skipped"]] == [str(paths[1]), str(paths[2])]
    with pytest.raises(DataError, match="none of the 2 images could be read"):
        pkg.predict(paths[1:])
