"""Misclassified text messages, model and baseline side by side, so a reader sees what each one misses.

For a spam filter the interesting question is less "how many" than "which": the model's confident
mistakes next to what the TF-IDF baseline said about the same message, and the other way round. Each
message is shown as a short whitespace-collapsed snippet that opens to the stored text (run.py cuts it
to 2,000 characters). Every piece of message text, label and path is escaped: emails carry HTML.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shipml.evaluate.report_html import Raw, esc, not_available, num, table

__all__ = ["SNIPPET_CHARS", "message_cell", "text_mistakes"]

SNIPPET_CHARS = 400  # characters of a message shown before it is opened


def message_cell(text: object) -> Raw:
    """A message as table-cell HTML: the snippet, opening to the full stored text when there is more."""
    full = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    collapsed = " ".join(full.split())
    if not collapsed:
        return Raw('<span class="na">no text</span>')
    snippet = collapsed[:SNIPPET_CHARS] + ("…" if len(collapsed) > SNIPPET_CHARS else "")
    if snippet == full:
        return Raw(f'<span class="msg">{esc(snippet)}</span>')
    return Raw(f'<details class="msg"><summary>{esc(snippet)}</summary><pre>{esc(full)}</pre></details>')


def _confidence(df: pd.DataFrame, prefix: str) -> pd.Series:
    """The probability each classifier gave the label it predicted: `<prefix>proba:<predicted>`.

    Read per row rather than from the `confidence` column, because with a tuned threshold the
    predicted label need not be the most probable one; `confidence` is the fallback for the model.
    """
    predicted = df[f"{prefix}y_pred"].astype(str)
    out = pd.Series(np.nan, index=df.index, dtype=np.float64)
    for column in df.columns:
        name = str(column)
        if name.startswith(f"{prefix}proba:"):
            hit = predicted == name.removeprefix(f"{prefix}proba:")
            out[hit] = pd.to_numeric(df.loc[hit, column], errors="coerce")
    if not prefix and "confidence" in df:
        out = out.fillna(pd.to_numeric(df["confidence"], errors="coerce"))
    return out


def _prediction(label: object, confidence: float, right: bool) -> str:
    mark = "✓" if right else "✗"
    return f"{mark} {label}" + ("" if np.isnan(confidence) else f" ({num(confidence)})")


def _list(df: pd.DataFrame, wrong: pd.Series, by: str, limit: int, sides: list[tuple[str, str]]) -> Raw:
    """Up to `limit` wrong rows, most confident first (ties by row), as a table with the message."""
    picked = df[wrong].sort_values([by, "row"], ascending=[False, True], na_position="last").head(limit)
    has_source = "source" in df
    headers = ["row", *(["source"] if has_source else []), "true", *(h for h, _ in sides), "message"]
    rows = []
    for _, r in picked.iterrows():
        cells: list[object] = [r["row"], *([r["source"]] if has_source else []), str(r["y_true"])]
        for _, prefix in sides:
            label = r[f"{prefix}y_pred"]
            cells.append(_prediction(label, float(r[f"_conf:{prefix}"]), str(label) == str(r["y_true"])))
        rows.append([*cells, message_cell(r.get("text"))])
    return table(headers, rows)


def text_mistakes(df: pd.DataFrame, limit: int) -> Raw:
    """The model's and the baseline's wrong test messages, each list sorted by the wrong side's confidence."""
    truth = df["y_true"].astype(str)
    df = df.assign(**{"_conf:": _confidence(df, "")})
    model_wrong = df["y_pred"].astype(str) != truth
    n, n_model = len(df), int(model_wrong.sum())
    summary = f"The model misclassifies {n_model:,} of {n:,} test messages"
    if "baseline:y_pred" not in df:
        return Raw(
            "\n".join(
                [
                    f"<p>{esc(summary)}.</p>",
                    f"<h3>Messages the model got wrong ({min(limit, n_model):,} most confident)</h3>",
                    _list(df, model_wrong, "_conf:", limit, [("model", "")]) if n_model else "<p>None.</p>",
                    "<h3>Messages the baseline got wrong</h3>",
                    not_available("predictions.parquet holds no baseline predictions (an older run, or no baseline)"),
                ]
            )
        )
    df = df.assign(**{"_conf:baseline:": _confidence(df, "baseline:")})
    sides = [("model", ""), ("baseline", "baseline:")]
    base_wrong = df["baseline:y_pred"].astype(str) != truth
    n_base, n_both = int(base_wrong.sum()), int((model_wrong & base_wrong).sum())
    summary += f", the baseline {n_base:,}; {n_both:,} are wrong for both."
    legend = " ✓ marks a correct prediction, ✗ a wrong one; in brackets, the probability it gave its own label."
    return Raw(
        "\n".join(
            [
                f"<p>{esc(summary + legend)}</p>",
                f"<h3>Messages the model got wrong ({min(limit, n_model):,} most confident)</h3>",
                _list(df, model_wrong, "_conf:", limit, sides) if n_model else "<p>None.</p>",
                f"<h3>Messages the baseline got wrong ({min(limit, n_base):,} most confident)</h3>",
                _list(df, base_wrong, "_conf:baseline:", limit, sides) if n_base else "<p>None.</p>",
            ]
        )
    )
