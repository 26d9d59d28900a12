"""Panel, query, variable and layout helpers shared by the dashboards (plain JSON)."""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 39
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
RUNBOOKS = "https://github.com/pgarchitect/pgarchitect/blob/main/docs/runbooks/"

Json = dict[str, Any]

# Label selectors of the template variables (multi-value, All = `.*`: always `=~`).
TARGETS = 'target=~"$target"'
DATABASES = 'target=~"$target",datname=~"$datname"'


def rate(metric: str, selector: str) -> str:
    """`rate()` over Grafana's $__rate_interval, as every panel must use."""
    return f"rate({metric}{{{selector}}}[$__rate_interval])"


def incr(metric: str, selector: str) -> str:
    """`increase()` over Grafana's $__rate_interval."""
    return f"increase({metric}{{{selector}}}[$__rate_interval])"


# --------------------------------------------------------------------------------------
# building blocks


def query(expr: str, legend: str = "__auto", *, instant: bool = False, table: bool = False) -> Json:
    """One Prometheus query of a panel."""
    t: Json = {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
    }
    if table:
        t["format"] = "table"
    return t


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


DEFAULT_THRESHOLDS = thresholds((None, "green"))


def timeseries(
    title: str,
    description: str,
    unit: str,
    targets: list[Json],
    *,
    w: int = 12,
    h: int = 8,
    stack: bool = False,
    bars: bool = False,
    th: Json | None = None,
    threshold_line: bool = False,
    overrides: list[Json] | None = None,
    min_: float | None = None,
    max_: float | None = None,
) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 80 if bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "thresholdsStyle": {"mode": "line" if threshold_line else "off"},
    }
    defaults: Json = {
        "unit": unit,
        "custom": custom,
        "color": {"mode": "palette-classic"},
        "thresholds": th or DEFAULT_THRESHOLDS,
    }
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "calcs": ["mean", "max", "lastNotNull"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
        "_size": (w, h),
    }


def stat(
    title: str,
    description: str,
    unit: str,
    targets: list[Json],
    *,
    w: int = 6,
    h: int = 4,
    th: Json | None = None,
    mappings: list[Json] | None = None,
    text_mode: str = "auto",
    decimals: int | None = None,
) -> Json:
    defaults: Json = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": th or DEFAULT_THRESHOLDS,
        "mappings": mappings or [],
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": text_mode,
        },
        "targets": targets,
        "_size": (w, h),
    }


def table(
    title: str,
    description: str,
    unit: str,
    targets: list[Json],
    *,
    rename: dict[str, str],
    exclude: tuple[str, ...] = ("Time",),
    units: dict[str, str] | None = None,
    sort_by: str | None = None,
    w: int = 24,
    h: int = 10,
) -> Json:
    overrides = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "unit", "value": u}],
        }
        for name, u in (units or {}).items()
    ]
    options: Json = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"align": "auto", "cellOptions": {"type": "auto"}},
                "thresholds": DEFAULT_THRESHOLDS,
            },
            "overrides": overrides,
        },
        "options": options,
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {name: True for name in exclude},
                    "renameByName": rename,
                },
            },
        ],
        "targets": targets,
        "_size": (w, h),
    }


def query_var(name: str, label: str, query: str) -> Json:
    """A multi-value template variable over label values; All means the regex `.*`."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values", "qryType": 1},
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
        "regex": "",
    }


DATASOURCE_VAR: Json = {
    "name": "datasource",
    "label": "Data source",
    "type": "datasource",
    "query": "prometheus",
    "current": {"selected": True, "text": "Prometheus", "value": "prometheus"},
    "hide": 0,
    "includeAll": False,
    "multi": False,
    "options": [],
    "refresh": 1,
    "regex": "",
}


def layout(panels: list[Json]) -> list[Json]:
    """Place panels left to right, wrapping at 24 columns; number them and give refIds."""
    x = y = row_h = 0
    out: list[Json] = []
    for i, p in enumerate(panels, start=1):
        w, h = p.pop("_size")
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p = {"id": i, "gridPos": {"h": h, "w": w, "x": x, "y": y}, **p}
        for n, t in enumerate(p["targets"]):
            t["refId"] = chr(ord("A") + n)
        out.append(p)
        x += w
        row_h = max(row_h, h)
    return out


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], panels: list[Json]
) -> Json:
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["pgarchitect"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "pgarchitect",
                "type": "dashboards",
                "tags": ["pgarchitect"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": [DATASOURCE_VAR, *variables]},
        "panels": layout(panels),
    }
