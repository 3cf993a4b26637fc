"""HTML of the console's pages, from the page models of `views`.

Semantic HTML that reads top to bottom on a phone: headings, tables with captions and `scope`d
headers (wrapped so a wide table scrolls inside its box, never the page), definition lists for
facts, native `<progress>`. Every value from the cluster goes through `escape`. The page's `<main>`
is what the event stream replaces when something changes; the frame around it stays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from modelops.console import charts

STATIC_VERSION = "1"


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def badge(text: str, health: str) -> str:
    return f'<span class="badge {e(health)}">{e(text or "—")}</span>'


def table(
    caption: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    cls: str = "",
    raw_caption: bool = False,
    row_header: bool = True,
    stack: bool = True,
    hide_caption: bool = False,
) -> str:
    """A captioned table; cells are HTML already (escape before). The first cell heads its row.

    `stack`: on a narrow screen each row becomes a card of label: value lines (CSS reads the
    labels from `data-label`); without it the table scrolls sideways inside its own box.
    """
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            tag = "th" if i == 0 and row_header else "td"
            scope = ' scope="row"' if tag == "th" else ""
            label = f' data-label="{e(headers[i])}"' if i < len(headers) and headers[i] else ""
            cells.append(f"<{tag}{scope}{label}>{cell}</{tag}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        return f'<p class="empty">No {e(caption.lower())}.</p>'
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    cap = caption if raw_caption else e(caption)
    classes = " ".join(x for x in (cls, "stack" if stack else "") if x)
    cap_class = ' class="sr-only"' if hide_caption else ""
    return (
        f'<div class="scroll" role="region" aria-label="{e(caption)}" tabindex="0">'
        f'<table class="{e(classes)}"><caption{cap_class}>{cap}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def facts(pairs: Iterable[tuple[str, str]]) -> str:
    items = "".join(f"<div><dt>{e(k)}</dt><dd>{v}</dd></div>" for k, v in pairs if v not in ("", None))
    return f'<dl class="facts">{items}</dl>'


def link(href: str, text: str) -> str:
    return f'<a href="{e(href)}">{e(text)}</a>'


def short(digest: str, n: int = 12) -> str:
    if not digest:
        return "—"
    return f'<code title="{e(digest)}">{e(digest[:n])}</code>'


def conditions_table(rows: Sequence[Mapping[str, Any]]) -> str:
    return table(
        "Conditions",
        ("Type", "Status", "Reason", "Message", "Since"),
        ((e(c["type"]), e(c["status"]), e(c["reason"]), e(c["message"]), e(c["age"])) for c in rows),
    )


def events_table(rows: Sequence[Mapping[str, Any]]) -> str:
    return table(
        "Events",
        ("Age", "Type", "Reason", "Message"),
        (
            (
                e(r["age"]) + (f" (x{r['count']})" if r["count"] > 1 else ""),
                badge(r["type"], "failed" if r["type"] == "Warning" else "ok"),
                e(r["reason"]),
                e(r["message"]),
            )
            for r in rows
        ),
    )


def pods_table(rows: Sequence[Mapping[str, Any]]) -> str:
    return table(
        "Pods",
        ("Name", "Phase", "Ready", "Restarts", "IP", "Age"),
        (
            (e(p["name"]), e(p["phase"]), fmt(p["ready"]), e(p["restarts"]), e(p["ip"]), e(p["age"]))
            for p in rows
        ),
    )


def heading(kind: str, name: str, phase: str, health: str, namespace: str | None = None) -> str:
    where = f'<p class="where">{e(kind)} in namespace <b>{e(namespace)}</b></p>' if namespace else ""
    return f"<h1>{e(name)} {badge(phase, health)}</h1>{where}"


# -- pages --------------------------------------------------------------------------------------------


def overview(sections: Sequence[Mapping[str, Any]], errors: Sequence[str] = ()) -> str:
    parts = ["<h1>Overview</h1>"]
    parts += [f'<p class="error" role="alert">{e(x)}</p>' for x in errors]
    if not sections:
        parts.append(
            '<p class="empty">No modelops resources are served by this cluster (CRDs not installed).</p>'
        )
    for s in sections:
        rows = (
            (
                link(r["href"], r["name"]),
                e(r["namespace"]),
                badge(r["phase"] or r["ready"], r["health"]),
                e(r["summary"]),
                e(r["reason"]) + (f"<br><small>{e(r['message'])}</small>" if r["message"] else ""),
                e(r["age"]),
            )
            for r in s["rows"]
        )
        parts.append(f'<section aria-labelledby="h-{e(s["plural"])}">')
        parts.append(f'<h2 id="h-{e(s["plural"])}">{e(s["kind"])}s <small>({len(s["rows"])})</small></h2>')
        parts.append(
            table(
                f"{s['kind']}s",
                ("Name", "Namespace", "Phase", "Status", "Ready reason", "Age"),
                rows,
                cls="objects",
                hide_caption=True,
            )
        )
        parts.append("</section>")
    return "".join(parts)


def training(v: Mapping[str, Any], log: str, log_pod: str) -> str:
    curves = v["curves"]
    markers = [charts.Marker(m["step"], m["label"]) for m in curves["markers"]]
    p = v["progress"]
    percent = v["percent"]
    bar = (
        f'<p><label for="progress">Progress</label> <progress id="progress" max="100" value="{int(percent)}">'
        f"{int(percent)}%</progress> <b>{int(percent)}%</b></p>"
        if percent is not None
        else ""
    )
    mv = v["model_version"]
    parts = [
        heading(v["kind"], v["name"], v["phase"], v["health"], v["namespace"]),
        bar,
        facts(
            [
                (
                    "Epoch",
                    # totalEpochs may be 0 once a job ends: the spec's epochs say how many there were.
                    e(f"{p.get('epoch')} of {p.get('totalEpochs') or v['spec']['epochs'] or '?'}")
                    if p.get("epoch")
                    else "",
                ),
                ("Step", e(f"{p.get('step')} of {p.get('totalSteps')}") if p.get("step") is not None else ""),
                ("Training loss", e(fmt(p.get("loss"))) if p.get("loss") is not None else ""),
                (
                    "Throughput",
                    e(f"{p['samplesPerSecond']:.0f} samples/s") if p.get("samplesPerSecond") else "",
                ),
                ("ETA", e(v["eta"])),
                ("Elapsed", e(v["elapsed"])),
                ("Restarts", e(v["restarts"])),
                (
                    "Trial of",
                    link(f"/ns/{v['namespace']}/tuningjobs/{v['tuning_job']}", v["tuning_job"])
                    if v.get("tuning_job")
                    else "",
                ),
                ("Recipe", e(v["spec"]["recipe"])),
                ("Dataset", e(v["spec"]["dataset"])),
                ("Nodes", e(v["spec"]["nodes"])),
                (
                    "ModelVersion",
                    link(f"/ns/{v['namespace']}/models/{v['model']}#{mv}", mv) if mv else "",
                ),
            ]
        ),
    ]
    if v["failure"]:
        f = v["failure"]
        parts.append(f'<p class="error" role="alert"><b>{e(f.get("reason"))}</b>: {e(f.get("message"))}</p>')
    parts.append('<section aria-labelledby="h-curves"><h2 id="h-curves">Training curves</h2>')
    parts.append(
        f'<p class="note">{curves["points"]} point(s) in status.history'
        + (f", {len(markers)} restart(s) marked" if markers else "")
        + ".</p>"
    )
    parts.append(
        charts.line_chart(
            [charts.Series(k, pts) for k, pts in curves["losses"].items()],
            title="Loss over steps",
            x_label="step",
            y_label="loss",
            markers=markers,
            chart_id="loss-chart",
        )
    )
    if curves["others"]:
        parts.append(
            charts.line_chart(
                [charts.Series(k, pts) for k, pts in curves["others"].items()],
                title="Validation metrics over steps",
                x_label="step",
                markers=markers,
                chart_id="metric-chart",
            )
        )
    parts.append("</section>")
    if v["metrics"]:
        parts.append(
            table(
                "Final validation metrics",
                ("Metric", "Value"),
                ((e(k), fmt(x)) for k, x in v["metrics"].items()),
            )
        )
    ck = v["checkpoint"]
    if ck:
        parts.append(
            facts(
                [
                    ("Checkpoint step", e(ck.get("step"))),
                    ("Checkpoint sha256", short(ck.get("sha256") or "")),
                    ("Skipped corrupt", e(ck.get("skippedCorrupt"))),
                ]
            )
        )
    parts.append(conditions_table(v["conditions"]))
    parts.append(pods_table(v["pods"]))
    parts.append(f'<section aria-labelledby="h-log"><h2 id="h-log">Log of {e(log_pod or "rank 0")}</h2>')
    parts.append(
        f'<pre class="log" tabindex="0" aria-label="last lines of the log">{e(log)}</pre>'
        if log
        else '<p class="empty">No log yet.</p>'
    )
    parts.append("</section>")
    parts.append(events_table(v["events"]))
    return "".join(parts)


def model(v: Mapping[str, Any], namespace: str, compare_href: str) -> str:
    versions = v["versions"]
    parts = [
        f'<h1>Model {e(v["name"])}</h1><p class="where">in namespace <b>{e(namespace)}</b>, '
        f"{len(v['all_names'])} version(s)</p>"
    ]
    if v["hidden"]:
        parts.append(
            f'<p class="note">Showing {len(versions)} of {len(v["all_names"])} versions: the newest and those '
            f"holding an alias. Choose others below, or {link(compare_href + '?v=all', 'show all')}.</p>"
        )
    if not versions:
        parts.append('<p class="empty">No ModelVersion of this model.</p>')
        return "".join(parts)
    names = [c["name"] for c in versions]
    head = ["", *[f"v{c['version']}" for c in versions]]
    rows: list[list[str]] = [
        ["ModelVersion", *[f'<span id="{e(c["name"])}">{e(c["name"])}</span>' for c in versions]],
        ["Phase", *[badge(c["phase"], c["health"]) for c in versions]],
        ["Aliases", *[e(", ".join(c["aliases"])) or "—" for c in versions]],
    ]
    for m in v["metric_names"]:
        row = [e(m)]
        for c in versions:
            value = c["metrics"][m]
            best = len(versions) > 1 and v["best"].get(m) == c["name"]
            row.append(f'<span class="best" title="best">{fmt(value)} ★</span>' if best else fmt(value))
        rows.append(row)
    rows += [
        ["Format", *[e(c["format"]) for c in versions]],
        ["Size", *[e(c["size"]) or "—" for c in versions]],
        ["sha256", *[short(c["sha256"]) for c in versions]],
        ["Age", *[e(c["age"]) for c in versions]],
    ]
    parts.append('<section aria-labelledby="h-compare"><h2 id="h-compare">Versions side by side</h2>')
    parts.append(
        f'<form class="compare" method="get" action="{e(compare_href)}"><fieldset><legend>Compare</legend>'
        + "".join(
            f'<label><input type="checkbox" name="v" value="{e(n)}"{" checked" if n in names else ""}> {e(n)}</label>'
            for n in v["all_names"]
        )
        + '<button type="submit">Show selected</button></fieldset></form>'
    )
    parts.append(
        table(
            "Metrics of each version (★ marks the best)",
            head,
            rows,
            cls="compare-table",
            stack=False,
        )
    )
    if v["metric_names"]:
        # One group per metric, one bar per version: the versions stand next to each other.
        metric_names = v["metric_names"]
        series = [
            charts.Series(
                f"v{c['version']}",
                [
                    (i, float(c["metrics"][m]))
                    for i, m in enumerate(metric_names)
                    if c["metrics"][m] is not None
                ],
            )
            for c in versions
        ]
        parts.append(
            charts.bar_chart(metric_names, series, title="Metrics by version", chart_id="compare-chart")
        )
    parts.append("</section>")
    parts.append('<section aria-labelledby="h-lineage"><h2 id="h-lineage">Lineage</h2><ol class="lineage">')
    for c in versions:
        lin = c["lineage"]
        steps = []
        steps.append(
            f'<span class="node">data {short(lin["dataset"])}</span>'
            if lin["dataset"]
            else f'<span class="node">{e(lin["source"]) or "data unknown"}</span>'
        )
        if lin.get("tuning_job"):
            tune_href = f"/ns/{namespace}/tuningjobs/{lin['tuning_job']}"
            steps.append(f'<span class="node">TuningJob {link(tune_href, lin["tuning_job"])}</span>')
        if lin["training_job"]:
            tj_href = f"/ns/{namespace}/trainingjobs/{lin['training_job']}"
            word = "best trial" if lin.get("tuning_job") else "TrainingJob"
            steps.append(f'<span class="node">{word} {link(tj_href, lin["training_job"])}</span>')
        steps.append(f'<span class="node">ModelVersion <b>{e(c["name"])}</b></span>')
        served = lin["served_by"]
        steps.append(
            '<span class="node">'
            + (
                ", ".join(f"InferenceService {link(s['href'], s['name'])} ({e(s['track'])})" for s in served)
                if served
                else "not served"
            )
            + "</span>"
        )
        parts.append("<li>" + ' <span aria-hidden="true">→</span> '.join(steps) + "</li>")
    parts.append("</ol></section>")
    parts.append('<section aria-labelledby="h-aliases"><h2 id="h-aliases">Alias history</h2>')
    if v["timeline"]:
        parts.append('<ol class="timeline">')
        for t in v["timeline"]:
            health = {"Granted": "ok", "Revoked": "waiting", "Denied": "failed"}.get(t["action"], "unknown")
            parts.append(
                f'<li><time datetime="{e(t["time"])}">{e(t["time"])}</time> '
                f"{badge(t['action'], health)} <b>@{e(t['alias'])}</b> → {e(t['version'])}"
                + (f" (from {e(t['previous'])})" if t["previous"] else "")
                + (f"<br><small>{e(t['message'])}</small>" if t["message"] else "")
                + "</li>"
            )
        parts.append("</ol>")
    else:
        parts.append('<p class="empty">No alias was granted or denied yet.</p>')
    parts.append("</section>")
    parts.append('<section aria-labelledby="h-gates"><h2 id="h-gates">Gates</h2>')
    gate_rows = [
        (
            e(c["name"]),
            e(f"{g['metric']} {g['op']} {g['threshold']}"),
            fmt(g["value"]),
            badge("passed", "ok")
            if g["passed"]
            else badge("failed", "failed")
            if g["passed"] is False
            else "—",
        )
        for c in versions
        for g in c["gates"]
    ]
    parts.append(table("Promotion gates and results", ("Version", "Gate", "Value", "Result"), gate_rows))
    parts.append("</section>")
    return "".join(parts)


def serving(v: Mapping[str, Any]) -> str:
    tr = v["traffic"]
    stable, canary = v["stable"], v["canary"]
    ref, pred = v["model_ref"], v["predictor"]
    ref_text = f"{ref.get('model')} " + (
        f"v{ref['version']}" if ref.get("version") else f"@{ref.get('alias')}"
    )
    parts = [
        heading(v["kind"], v["name"], v["phase"], v["health"], v["namespace"]),
        facts(
            [
                ("Model", link(f"/ns/{v['namespace']}/models/{v['model']}", ref_text) if v["model"] else ""),
                ("URL", f"<code>{e(v['url'])}</code>" if v["url"] else ""),
                ("Replicas", e(f"{v['ready_replicas']} ready of {v['replicas']}")),
                ("Runtime", e(v["runtime"])),
                (
                    "Predictor image",
                    f"<code>{e(pred['image'])}</code> (HTTP port {e(pred['port'])})" if pred else "",
                ),
                (
                    "gRPC",
                    f"<code>{e(v['name'])}.{e(v['namespace'])}.svc.cluster.local:{e(v['grpc_port'])}</code>"
                    if v["grpc_port"]
                    else "",
                ),
                ("Precision", e(v["precision"]) if v["precision"] not in ("", "fp32") else ""),
                ("Quantization", e(v["quantization"]) if v["quantization"] not in ("", "none") else ""),
            ]
        ),
        '<section aria-labelledby="h-traffic"><h2 id="h-traffic">Traffic</h2>',
        charts.traffic_bar(tr["stable"], tr["canary"]),
        '<ul class="legend">'
        f'<li><span class="swatch s0" aria-hidden="true"></span>stable {e(stable.get("modelVersion") or "—")}: <b>{tr["stable"]}%</b>'
        f" ({e(stable.get('readyReplicas', 0))} ready)</li>"
        f'<li><span class="swatch s1" aria-hidden="true"></span>canary {e(canary.get("modelVersion") or "none")}: <b>{tr["canary"]}%</b>'
        + (f" ({e(canary.get('readyReplicas', 0))} ready)" if canary else "")
        + "</li></ul>",
    ]
    a = canary.get("analysis") or {}
    if canary:
        limits = v["analysis_limits"]
        parts.append(
            facts(
                [
                    (
                        "Latest analysis",
                        badge(a.get("result") or "pending", _verdict_health(a.get("result"))),
                    ),
                    ("Message", e(a.get("message"))),
                    ("Failures", e(f"{a.get('failures', 0)} of {limits.get('failureLimit', 2)}")),
                    ("Step", e(a.get("step", 0))),
                ]
            )
        )
    parts.append("</section>")
    r = v["rates"]
    parts.append('<section aria-labelledby="h-requests"><h2 id="h-requests">Requests</h2>')
    if r:
        parts.append(
            table(
                "Request rate, errors and latency, measured by the console from the pods' /metrics",
                ("Track", "Requests/s", "5xx ratio", "4xx", "p50 ms", "p99 ms"),
                (
                    (
                        e(track),
                        fmt(x["rps"]),
                        fmt(x["error_ratio"]),
                        e(x["client_errors"]),
                        fmt(x["p50_ms"]),
                        fmt(x["p99_ms"]),
                    )
                    for track, x in sorted(r.items())
                    if x
                ),
            )
        )
        series = v["rate_series"]
        if any(len(points) >= 2 for points in series.values()):
            for key, label, chart_id in (
                ("rps", "requests/s", "rps-chart"),
                ("p99_ms", "p99 latency ms", "p99-chart"),
                ("error_ratio", "5xx ratio", "errors-chart"),
            ):
                parts.append(
                    charts.line_chart(
                        [
                            charts.Series(
                                track, [(t, float(x[key])) for t, x in points if x.get(key) is not None]
                            )
                            for track, points in sorted(series.items())
                        ],
                        title=f"{label} per track, since this console started watching",
                        x_label="seconds ago",
                        y_label=label,
                        chart_id=chart_id,
                    )
                )
    else:
        parts.append('<p class="empty">Measuring: a rate needs two looks at the pods\' counters.</p>')
    parts.append("</section>")
    parts.append('<section aria-labelledby="h-rollouts"><h2 id="h-rollouts">Rollout history</h2>')
    if not v["rollouts"]:
        parts.append('<p class="empty">No rollout yet.</p>')
    for i, ro in enumerate(v["rollouts"]):
        health = {
            "Promoted": "ok",
            "Deployed": "ok",
            "RolledBack": "failed",
            "InProgress": "progressing",
        }.get(ro["outcome"], "unknown")
        parts.append(
            f'<article class="rollout" aria-labelledby="ro-{i}"><h3 id="ro-{i}">{e(ro["model_version"])} '
            f"{badge(ro['outcome'], health)}</h3>"
            + facts(
                [
                    (
                        "Started",
                        f'<time datetime="{e(ro["start"])}">{e(ro["age"])} ago</time>' if ro["start"] else "",
                    ),
                    ("Took", e(ro["took"])),
                    ("Trigger", e(ro["trigger"])),
                    ("Replaced", e(ro["replaced"])),
                    ("Why", e(ro["reason"])),
                ]
            )
        )
        if ro["analyses"]:
            parts.append(
                table(
                    f"Canary analyses of {ro['model_version']}",
                    ("When", "Verdict", "Traffic %", "Requests", "Success rate", "p99 ms", "Message"),
                    (
                        (
                            f'<time datetime="{e(x["time"])}">{e(x["age"])} ago</time>',
                            badge(x["result"], _verdict_health(x["result"])),
                            fmt(x["traffic"]),
                            fmt(x["requests"]),
                            fmt(x["success_rate"]),
                            fmt(x["p99_ms"]),
                            e(x["message"]),
                        )
                        for x in ro["analyses"]
                    ),
                    cls="analyses",
                )
            )
        parts.append("</article>")
    parts.append("</section>")
    parts.append(conditions_table(v["conditions"]))
    parts.append(pods_table(v["pods"]))
    parts.append(events_table(v["events"]))
    return "".join(parts)


def _verdict_health(result: Any) -> str:
    return {"Passed": "ok", "Failed": "failed", "Inconclusive": "waiting"}.get(str(result), "unknown")


def backups(rows: Sequence[Mapping[str, Any]]) -> str:
    parts = ["<h1>Backups</h1>"]
    if not rows:
        parts.append('<p class="empty">No object has a backup policy.</p>')
    for b in rows:
        parts.append(
            f'<section class="backup"><h2>{e(b["kind"])} {link(b["href"], b["name"])} '
            f"<small>in {e(b['namespace'])}</small></h2>"
        )
        parts.append(
            facts(
                [
                    ("Schedule", f"<code>{e(b['schedule'])}</code>" if b["schedule"] else ""),
                    ("Methods", e(", ".join(b["methods"]))),
                    ("Kept", e(b["kept"])),
                    ("Last success", e(f"{b['last_success']} ago") if b["last_success"] else "never"),
                    (
                        "Next run",
                        f'<time datetime="{e(b["next_run"])}">{e(b["next_run"])}</time>'
                        if b["next_run"]
                        else "",
                    ),
                ]
            )
        )
        if b["failure"]:
            f = b["failure"]
            parts.append(
                f'<p class="error" role="alert">Last failure {e(f["age"])} ago: <b>{e(f["reason"])}</b> {e(f["message"])}</p>'
            )
        parts.append(
            table(
                f"Backups of {b['name']}",
                ("Name", "Method", "Age", "Where", "Manifest sha256", "Files", "Size"),
                (
                    (
                        e(r["name"]),
                        e(r["method"]),
                        f'<time datetime="{e(r["time"])}">{e(r["age"])}</time>',
                        e(r["where"]) or ("ready" if r["ready"] else "—"),
                        short(r["manifest"], 16),
                        fmt(r["files"]),
                        e(r["size"]) or "—",
                    )
                    for r in b["records"]
                ),
            )
        )
        parts.append("</section>")
    return "".join(parts)


TRIAL_HEALTH = {
    "Complete": "ok",
    "Running": "progressing",
    "Pruned": "waiting",
    "Failed": "failed",
    "Stopped": "waiting",
}


def _trial_cell(v: Mapping[str, Any], t: Mapping[str, Any]) -> str:
    if t["training_job"]:
        return link(f"/ns/{v['namespace']}/trainingjobs/{t['training_job']}", t["name"])
    return e(t["name"]) + (' <span class="note">(deleted by cleanup)</span>' if t["deleted"] else "")


def tuning(v: Mapping[str, Any]) -> str:
    c, mv = v["counts"], v["model_version"]
    best = (
        f"{fmt(v['best_value'])} ({v['best_name']})"
        if isinstance(v["best_value"], int | float) and v["best_name"]
        else fmt(v["best_value"])
    )
    parts = [
        heading(v["kind"], v["name"], v["phase"], v["health"], v["namespace"]),
        facts(
            [
                ("Objective", e(f"{v['direction']} {v['metric']}")),
                ("Trials", e(f"{c['created']} of {c['max'] or '?'} created")),
                ("Done", e(c["done"])),
                ("Running", e(c["running"])),
                ("Pruned", e(c["pruned"])),
                ("Failed", e(c["failed"])),
                ("Best", e(best)),
                (
                    "Algorithm",
                    e(
                        v["algorithm"]
                        + (f", {v['pruner']} pruner" if v["pruner"] not in ("", "none") else ", no pruner")
                    ),
                ),
                ("Elapsed", e(v["elapsed"])),
                ("ModelVersion", link(f"/ns/{v['namespace']}/models/{v['model']}#{mv}", mv) if mv else ""),
            ]
        ),
    ]
    params = v["param_names"]
    parts.append('<section aria-labelledby="h-board"><h2 id="h-board">Leaderboard</h2>')
    parts.append(
        table(
            "Trials: scored ones best first, then running, pruned, stopped and failed",
            ("Rank", "Trial", "State", v["metric"], *params, "Took", "Note"),
            (
                (
                    e(t.get("rank", "")),
                    _trial_cell(v, t),
                    badge(t["state"], TRIAL_HEALTH.get(t["state"], "")),
                    fmt(t["value"])
                    if t["value"] is not None
                    else (f'<span class="note">last {fmt(t["last"][1])}</span>' if t["last"] else "—"),
                    *[fmt(t["params"].get(p)) for p in params],
                    e(t["took"]),
                    e(t["reason"]),
                )
                for t in v["leaderboard"]
            ),
            cls="leaderboard",
            stack=False,
        )
    )
    parts.append("</section>")
    if v["scatter"]:
        parts.append('<section aria-labelledby="h-params"><h2 id="h-params">Objective vs parameters</h2>')
        parts.append(
            f'<p class="note">One point per trial; pruned trials at the last {e(v["metric"])} they reported.</p>'
        )
        for p, pts in v["scatter"].items():
            parts.append(
                charts.scatter_chart(
                    [
                        charts.Series("scored", [(x, y) for x, y, _ in pts["scored"]]),
                        charts.Series("pruned", [(x, y) for x, y, _ in pts["pruned"]]),
                    ],
                    names=[[n for _, _, n in pts["scored"]], [n for _, _, n in pts["pruned"]]],
                    title=f"{v['metric']} vs {p}",
                    x_label=p,
                    y_label=v["metric"],
                    log_x=pts["log"],
                    chart_id=f"param-{p}",
                )
            )
        parts.append("</section>")
    if v["curves"]:
        parts.append('<section aria-labelledby="h-trialcurves"><h2 id="h-trialcurves">Trial curves</h2>')
        parts.append(
            '<p class="note">The per-epoch values the operator saw while each trial ran '
            "(status.trials[].intermediate, what the pruner judges); a short trial may show few.</p>"
        )
        parts.append(
            charts.line_chart(
                [charts.Series(name, pts) for name, pts in v["curves"]],
                title=f"{v['metric']} per epoch of the best, the running and the pruned trials",
                x_label="epoch",
                y_label=v["metric"],
                chart_id="trial-curves",
            )
        )
        parts.append("</section>")
    parts.append(conditions_table(v["conditions"]))
    return "".join(parts)


def generic(v: Mapping[str, Any]) -> str:
    return heading(v["kind"], v["name"], v["phase"], v["health"], v["namespace"]) + conditions_table(
        v["conditions"]
    )


def not_found(what: str) -> str:
    return f'<h1>Not found</h1><p class="error" role="alert">{e(what)} does not exist (or was deleted).</p><p>{link("/", "Back to the overview")}</p>'


# -- the frame --------------------------------------------------------------------------------------


def digest(main: str) -> str:
    return hashlib.sha256(main.encode()).hexdigest()[:16]


def frame(title: str, main: str, *, context: str, live: bool = True) -> str:
    """The whole document: header with navigation, the page's main, the live-update status."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · modelops console</title>"
        f'<link rel="stylesheet" href="/static/console.css?v={STATIC_VERSION}">'
        f'<script src="/static/console.js?v={STATIC_VERSION}" defer></script>'
        "</head><body>"
        '<a class="skip" href="#main">Skip to content</a>'
        '<header><nav aria-label="Main"><a class="brand" href="/">modelops</a>'
        '<a href="/">Overview</a><a href="/backups">Backups</a></nav>'
        f'<p class="context">{e(context)} · read-only</p></header>'
        f'<main id="main" tabindex="-1" data-live="{"1" if live else "0"}" data-digest="{digest(main)}">{main}</main>'
        '<footer><p><span id="live" role="status" aria-live="polite">Live updates: connecting…</span> '
        '<span id="updated"></span></p></footer>'
        "</body></html>"
    )
