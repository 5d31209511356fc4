"""The report's section on the test rows the model gets most wrong, so a reader sees failures, not just rates.

Classification: the most confident misclassifications (image thumbnails inline, the rows' feature
values for tables, and for text two lists — the model's mistakes and the baseline's — in report_text).
Regression: the largest absolute errors. Where predictions.parquet holds the baseline's prediction
(`baseline:y_pred`), it is shown beside the model's: a mistake both make is a hard or mislabelled row.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import numpy as np
import pandas as pd

from shipml.evaluate.report_html import Raw, Section, esc, not_available, num, table
from shipml.evaluate.report_text import message_cell, text_mistakes
from shipml.evaluate.rundir import RunFiles

__all__ = ["examples"]

_MAX_FEATURE_COLUMNS = 20  # wider example tables stop being readable
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _baseline_line(r: pd.Series, value: str) -> str:
    """The caption line with the baseline's prediction, when the run stored one for this row."""
    return f"<br>baseline {value}" if "baseline:y_pred" in r and not pd.isna(r["baseline:y_pred"]) else ""


def _classification_caption(r: pd.Series) -> str:
    return (
        f"true <b>{esc(r['y_true'])}</b><br>predicted <b>{esc(r['y_pred'])}</b> ({esc(num(r['confidence']))})"
        + _baseline_line(r, f"<b>{esc(r.get('baseline:y_pred'))}</b>")
        + f"<br>row {esc(r['row'])}"
    )


def _regression_caption(r: pd.Series) -> str:
    return (
        f"true {esc(num(r['y_true']))}<br>predicted {esc(num(r['y_pred']))}"
        + _baseline_line(r, esc(num(r.get("baseline:y_pred"))))
        + f"<br>row {esc(r['row'])}"
    )


def _image_cards(rows: pd.DataFrame, caption: Callable[[pd.Series], str]) -> Raw:
    """Thumbnails inline as data: URIs (only real PNG bytes are embedded), each with its caption."""
    cards = []
    for _, r in rows.iterrows():
        data = r.get("image_png")
        if isinstance(data, bytes | bytearray) and bytes(data[:8]) == _PNG_MAGIC:
            src = "data:image/png;base64," + base64.b64encode(bytes(data)).decode("ascii")
            img = f'<img src="{src}" alt="row {esc(r["row"])}" title="{esc(r.get("source", ""))}">'
        else:
            img = '<div class="noimg">no image</div>'
        cards.append(f'<figure class="card">{img}<figcaption>{caption(r)}</figcaption></figure>')
    return Raw('<div class="cards">' + "\n".join(cards) + "</div>")


def _example_table(rows: pd.DataFrame, leading: list[tuple[str, str]]) -> Raw:
    """Leading columns (header, column) then the row's feature values."""
    features = [c for c in rows.columns if str(c).startswith("feature:")]
    shown = features[:_MAX_FEATURE_COLUMNS]
    headers = [h for h, _ in leading] + [c.removeprefix("feature:") for c in shown]
    body = [[r.get(col) for _, col in leading] + [r.get(c) for c in shown] for _, r in rows.iterrows()]
    out = table(headers, body)
    if len(features) > len(shown):
        out = Raw(out + f"<p>First {len(shown)} of {len(features)} feature columns shown.</p>")
    return out


def _largest_errors(df: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, str]:
    df = df.assign(error=df["y_pred"].astype(float) - df["y_true"].astype(float))
    df = df.assign(abs_error=df["error"].abs())
    picked = df.sort_values(["abs_error", "row"], ascending=[False, True]).head(limit)
    return picked, f"The {len(picked)} test rows with the largest absolute error (of {len(df):,})."


def _confident_mistakes(df: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, str]:
    wrong = df[df["y_true"].astype(str) != df["y_pred"].astype(str)]
    if "confidence" not in wrong:
        wrong = wrong.assign(confidence=np.nan)
    picked = wrong.sort_values(["confidence", "row"], ascending=[False, True], na_position="last").head(limit)
    intro = f"{len(wrong):,} of {len(df):,} test rows are misclassified"
    return picked, intro + (f"; the {len(picked)} most confident mistakes:" if len(picked) else ".")


def examples(files: RunFiles) -> Section:
    """The test rows the model gets most wrong: confident misclassifications, or the largest errors."""
    regression = files.task_kind == "regression"
    anchor, title = ("errors", "Largest errors") if regression else ("mistakes", "Misclassified examples")
    df = files.predictions
    if df is None or not {"y_true", "y_pred"} <= set(df.columns):
        return Section(anchor, title, not_available(files.missing("predictions.parquet")))
    limit = files.evaluate_option("misclassified", 24)
    limit = limit if isinstance(limit, int) and limit >= 0 else 24
    df = df if "row" in df else df.assign(row=np.arange(len(df)))
    if not regression and "text" in df and "image_png" not in df:
        return Section(anchor, title, text_mistakes(df, limit))
    if regression:
        picked, intro = _largest_errors(df, limit)
        leading = [("row", "row"), ("true", "y_true"), ("predicted", "y_pred"), ("error", "error")]
        caption = _regression_caption
    else:
        picked, intro = _confident_mistakes(df, limit)
        leading = [("row", "row"), ("true", "y_true"), ("predicted", "y_pred"), ("confidence", "confidence")]
        caption = _classification_caption
    if "baseline:y_pred" in df:
        leading.append(("baseline", "baseline:y_pred"))
    if "text" in df:
        # object dtype keeps the Raw markers (a str column would turn them into plain, re-escaped str)
        picked = picked.assign(_message=pd.Series([message_cell(t) for t in picked["text"]], picked.index, object))
        leading.append(("text", "_message"))
    if picked.empty:
        return Section(anchor, title, Raw(f"<p>{esc(intro)}</p>"))
    shown = _image_cards(picked, caption) if "image_png" in picked else _example_table(picked, leading)
    return Section(anchor, title, Raw(f"<p>{esc(intro)}</p>\n{shown}"))
