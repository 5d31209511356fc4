"""`shipml monitor`: the monitor JSON of a running server (local or remote) as a live terminal view (Rich).
Reads only the HTTP routes (/v1/models, /v1/models/{name}/monitor), so it needs neither the registry nor the
packages, and works against any replica."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from shipml.errors import ServeError

__all__ = ["fetch_reports", "render", "watch"]


def _get(url: str, token: str | None) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # an http(s) URL (checked above)
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        hint = "; give the server's token with --token or SHIPML_API_TOKEN" if err.code == 401 else ""
        raise ServeError(f"{url} answered {err.code} {err.reason}{hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise ServeError(f"cannot reach a shipml server at {url} ({getattr(err, 'reason', err)}); start one with "
                         "`shipml serve <model>` or give --url") from None


def fetch_reports(url: str, token: str | None = None, models: list[str] | None = None) -> list[dict[str, Any]]:
    """The monitor report of every served model (or of the named ones)."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ServeError(f"--url {url!r} must start with http:// or https://")
    names = models or [m["name"] for m in _get(f"{base}/v1/models", token)]
    return [_get(f"{base}/v1/models/{urllib.request.quote(n, safe='')}/monitor", token) for n in names]


def _f(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def render(reports: list[dict[str, Any]]) -> Any:
    """A Rich renderable: per model, one row per live version, then its drift per signal."""
    from rich.console import Group
    from rich.table import Table

    parts: list[Any] = []
    for report in reports:
        table = Table(title=f"{report['model']}", title_justify="left")
        for col in ("version", "alias", "req", "per s", "4xx", "5xx", "p50 ms", "p99 ms", "accuracy [95% CI]", "test",
                    "drift"):
            table.add_column(col)
        for v in report["versions"]:
            tr, acc, drift = v.get("traffic") or {}, v.get("accuracy") or {}, v.get("drift") or {}
            lat = tr.get("latency_ms") or {}
            alias = v["alias"] + (f" {v['weight']}%" if v["alias"] == "canary" else "")
            interval = f"[{_f(acc.get('ci_low'))}, {_f(acc.get('ci_high'))}]"
            acc_text = f"{_f(acc.get('value'))} {interval} n={acc.get('rows')}" if acc.get("rows") else "no feedback"
            if acc.get("flag"):
                acc_text = f"[red]{acc_text} below test[/red]"
            status = drift.get("status", "off")
            drift_text = f"[red]moved: {', '.join(drift['moved'])}[/red]" if drift.get("flag") else \
                f"{status} ({drift.get('rows', 0)} rows)"
            table.add_row(str(v["version"]), alias, str(tr.get("requests", "–")), _f(tr.get("per_s"), 1),
                          str(tr.get("client_errors", "–")), str(tr.get("server_errors", "–")), _f(lat.get("p50"), 1),
                          _f(lat.get("p99"), 1), acc_text, _f(acc.get("test")), drift_text)
        parts.append(table)
        for v in report["versions"]:
            signals = (v.get("drift") or {}).get("signals") or {}
            if not signals:
                continue
            detail = Table(title=f"{report['model']} v{v['version']}: drift per signal", title_justify="left")
            for col in ("signal", "PSI", "KS", "KS p", "reference median", "live median"):
                detail.add_column(col)
            for name, s in signals.items():
                style = "red" if s.get("moved") else ""
                detail.add_row(name, _f(s["psi"]), _f(s.get("ks")),
                               "–" if s.get("ks_p") is None else f"{s['ks_p']:.1e}", _f(s.get("reference_median")),
                               _f(s.get("live_median")), style=style)
            parts.append(detail)
    return Group(*parts)


def watch(url: str, token: str | None = None, models: list[str] | None = None, every_s: float = 2.0,
          once: bool = False) -> None:
    """Print the view once, or redraw it every `every_s` seconds until Ctrl-C."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if once:
        console.print(render(fetch_reports(url, token, models)))
        return
    with Live(render(fetch_reports(url, token, models)), console=console, refresh_per_second=4) as live:
        while True:
            time.sleep(every_s)
            live.update(render(fetch_reports(url, token, models)))
