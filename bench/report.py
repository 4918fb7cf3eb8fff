"""The performance targets checked against a run's results, and the table.

A ratio is the median of the rounds' ratios; its spread (lowest and highest
round) is shown beside it, and a target holds on the median.
"""

from __future__ import annotations

from typing import Any

POST_VS_FLOOR, POST_VS_HELPDESK, GET_VS_FLOOR = 0.35, 2.0, 1.0
FLOOD_CPU_VS_FLOOR = 2.0
EMAIL_VS_LOOP = 0.5
ACK_P50_MS, ACK_P99_MS = 500, 2000
WEB_RSS_MB, CELERY_RSS_MB = 120, 150
ADMIN_P50_MS, ADMIN_P95_MS = 150, 300

FLOODS = {
    "honeypot": "held: honeypot filled in",
    "too_fast": "held: sent back too fast",
    "email_limit": "past the per-email limit",
    "address_limit": "past the per-address limit (429)",
}


def spread(figure: dict[str, Any]) -> str:
    """``0.41 (0.38-0.44)``: the median and the rounds' range."""
    if figure["min"] == figure["max"]:
        return f"{figure['median']}"
    return f"{figure['median']} ({figure['min']}-{figure['max']})"


def check_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: str, ok: bool) -> None:
        targets.append({"name": name, "value": value, "target": target, "ok": bool(ok)})

    if t := r.get("throughput"):
        ratios, valid = t["ratios"], t["valid"]
        web_only = ratios["post_web_only_vs_floor"]
        add(
            "submit POST/s, web only, vs the floor",
            spread(web_only),
            f">= {POST_VS_FLOOR} (every answer checked, every row counted)",
            web_only["median"] >= POST_VS_FLOOR and valid,
        )
        if hd := ratios.get("post_web_only_vs_helpdesk"):
            add(
                "submit POST/s, web only, vs django-helpdesk 2.6.1's public ticket",
                spread(hd),
                f">= {POST_VS_HELPDESK}",
                hd["median"] >= POST_VS_HELPDESK and valid,
            )
        for kind, label in FLOODS.items():
            cpu = t["cpu_ratios_vs_floor_post"][kind]
            median = t["median"][f"flood_{kind}"]["cpu_ms_per_request"]
            add(
                f"bot flood, {label}: worker CPU per POST vs the floor's POST",
                f"{spread(cpu)}; {median} ms",
                f"<= {FLOOD_CPU_VS_FLOOR}",
                cpu["median"] <= FLOOD_CPU_VS_FLOOR and valid,
            )
        get = ratios["get_vs_floor"]
        add("GET /reset/ vs the floor's GET", spread(get), f">= {GET_VS_FLOOR}", get["median"] >= GET_VS_FLOOR)
    if e := r.get("email_throughput"):
        ratio = e["ratio"]
        add(
            "emails/s, one worker, vs a plain smtplib loop",
            spread(ratio),
            f">= {EMAIL_VS_LOOP} (none twice)",
            ratio["median"] >= EMAIL_VS_LOOP and e["duplicated"] == 0,
        )
    if a := r.get("ack_latency"):
        lat = a["latency_ms"]
        add("acknowledgment latency p50 (ms)", lat.get("p50"), f"<= {ACK_P50_MS}", lat.get("p50", 1e9) <= ACK_P50_MS)
        add("acknowledgment latency p99 (ms)", lat.get("p99"), f"<= {ACK_P99_MS}", lat.get("p99", 1e9) <= ACK_P99_MS)
        add(
            "acknowledgments lost / sent twice",
            f"{a['missing']} / {a['duplicated']}",
            "0 / 0",
            a["missing"] == 0 and a["duplicated"] == 0 and a["not_303"] == 0,
        )
    if s := r.get("admin_list"):
        for name, page in s["pages"].items():
            add(
                f"staff list {name} p50 / p95 (ms)",
                f"{page['p50']} / {page['p95']}",
                f"<= {ADMIN_P50_MS} / {ADMIN_P95_MS}",
                page["p50"] <= ADMIN_P50_MS and page["p95"] <= ADMIN_P95_MS and page["statuses"] == [200],
            )
        add(
            "staff list queries independent of size",
            "yes" if s["query_count_independent_of_size"] else "no",
            "yes",
            s["query_count_independent_of_size"],
        )
    if m := r.get("memory"):
        add(
            "web worker peak RSS (MB)",
            m["web_worker"]["peak_mb"],
            f"<= {WEB_RSS_MB}",
            m["web_worker"]["peak_mb"] <= WEB_RSS_MB,
        )
        celery = max(m["celery_main"]["peak_mb"], m["celery_pool"]["peak_mb"])
        add("Celery worker peak RSS (MB)", celery, f"<= {CELERY_RSS_MB}", celery <= CELERY_RSS_MB)
    return targets


def _speed(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "rps": run["rps"],
        "p50_ms": run["latency_ms"]["p50"],
        "p99_ms": run["latency_ms"]["p99"],
        "cpu_ms_per_request": run["cpu_ms_per_request"],
    }


def headline(r: dict[str, Any], *, full_results: str) -> dict[str, Any]:
    """What bench/results.json keeps of a run: what each target measured,
    how, and its ratio or figure; ``full_results`` names the file (under
    var/, not in git) with every round and the rest of the detail."""
    out: dict[str, Any] = {
        "when": r["when"],
        "machine": r["machine"],
        "quick": r["quick"],
        "load_average_before": r["load_average_before"],
        "load_average_after": r["load_average_after"],
        "seconds": r["seconds"],
        "full_results": full_results,
    }
    if t := r.get("throughput"):
        out["throughput"] = {
            "method": t["method"],
            "median_round": {name: _speed(run) for name, run in t["median"].items()},
            "ratios": t["ratios"],
            "cpu_ratios_vs_floor_post": t["cpu_ratios_vs_floor_post"],
            "valid": t["valid"],
        }
    if a := r.get("ack_latency"):
        out["ack_latency"] = {
            key: a[key] for key in ("method", "submitted", "not_303", "missing", "duplicated", "latency_ms")
        }
    if e := r.get("email_throughput"):
        out["email_throughput"] = {
            "method": e["method"],
            "worker_per_second": e["worker"]["per_second"],
            "smtplib_loop_per_second": e["smtplib_loop"]["per_second"],
            "smtplib_loop_connection_per_message_per_second": e["smtplib_loop_connection_per_message"]["per_second"],
            "ratio": e["ratio"],
            "ratio_vs_connection_per_message": e["ratio_vs_connection_per_message"],
            "duplicated": e["duplicated"],
        }
    if s := r.get("admin_list"):
        out["admin_list"] = {
            "method": s["method"],
            "rows": s["rows"],
            "pages": {name: {key: page[key] for key in ("p50", "p95", "queries")} for name, page in s["pages"].items()},
            "query_count_independent_of_size": s["query_count_independent_of_size"],
        }
    if m := r.get("memory"):
        out["memory_peak_mb"] = {name: process["peak_mb"] for name, process in m.items()}
    out["targets"] = r["targets"]
    return out


def _cell(run: dict[str, Any] | None) -> str:
    if run is None:
        return "-"
    return f"{run['rps']}; {run['latency_ms']['p50']} / {run['latency_ms']['p99']}; {run['cpu_ms_per_request']}"


def markdown_table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Run {r['when']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; "
        f"load average {r['load_average_before'][0]} before, {r['load_average_after'][0]} after"
        + (" (--quick)" if r.get("quick") else ""),
        "",
    ]
    if t := r.get("throughput"):
        b, ratios = t["median"], t["ratios"]
        lines += [
            "Median round; each cell: req/s; p50 / p99 ms; worker CPU ms per request. "
            "Every POST run with the Celery worker stopped.",
            "",
            "| page | floor | portal-reset | django-helpdesk 2.6.1 | vs floor | vs helpdesk |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| POST | {_cell(b['floor_post'])} | {_cell(b['ours_post_web_only'])} | {_cell(b.get('helpdesk_post'))} "
            f"| {spread(ratios['post_web_only_vs_floor'])} "
            f"| {spread(ratios['post_web_only_vs_helpdesk']) if 'post_web_only_vs_helpdesk' in ratios else '-'} |",
            f"| GET | {_cell(b['floor_get'])} | {_cell(b['ours_get'])} | {_cell(b.get('helpdesk_get'))} "
            f"| {spread(ratios['get_vs_floor'])} "
            f"| {spread(ratios['get_vs_helpdesk']) if 'get_vs_helpdesk' in ratios else '-'} |",
            "",
            "| bot flood on /reset/ | req/s | answers | worker CPU ms per POST | vs the floor's POST |",
            "| --- | --- | --- | --- | --- |",
        ]
        for kind, label in FLOODS.items():
            run = b[f"flood_{kind}"]
            answers = ", ".join(f"{n} x {status}" for status, n in sorted(run["statuses"].items()))
            lines.append(
                f"| {label} | {run['rps']} | {answers} | {run['cpu_ms_per_request']} "
                f"| {spread(t['cpu_ratios_vs_floor_post'][kind])} |"
            )
        lines += [
            "",
            f"Every answer as expected and every row counted: {t['valid']}. Rows made by the median round's "
            f"POST runs: floor {b['floor_post']['rows_created']}, "
            f"portal-reset {b['ours_post_web_only']['rows_created']}"
            + (f", helpdesk {b['helpdesk_post']['rows_created']}" if "helpdesk_post" in b else "")
            + ".",
            "",
        ]
    if a := r.get("ack_latency"):
        lat = a["latency_ms"]
        lines += [
            f"Acknowledgment latency, {a['submitted']} POSTs at a steady rate: p50 {lat.get('p50')} ms, "
            f"p99 {lat.get('p99')} ms, max {lat.get('max')} ms; {a['missing']} missing, {a['duplicated']} duplicated "
            f"(POST p50 {a['post_response_ms'].get('p50')} ms).",
            "",
        ]
    if e := r.get("email_throughput"):
        lines += [
            f"Email throughput, {e['worker']['emails']} queued at once (median round): worker "
            f"{e['worker']['per_second']}/s, plain smtplib loop {e['smtplib_loop']['per_second']}/s (one connection; "
            f"{e['smtplib_loop_connection_per_message']['per_second']}/s with one per message): ratio "
            f"{spread(e['ratio'])}.",
            "",
        ]
    if s := r.get("admin_list"):
        lines += [
            f"Staff list on {s['rows']:,} requests:",
            "",
            "| variant | p50 ms | p95 ms | rows shown | queries (full / small table) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, page in s["pages"].items():
            small = next(v for k, v in page.items() if k.startswith("queries_at_"))
            lines.append(
                f"| {name} | {page['p50']} | {page['p95']} | {page['rows_on_page']} | {page['queries']} / {small} |"
            )
        lines.append("")
    if mem := r.get("memory"):
        lines += [
            f"Peak RSS: web worker {mem['web_worker']['peak_mb']} MB ({mem['web_worker']['processes_seen']} seen), "
            f"Celery main {mem['celery_main']['peak_mb']} MB, pool {mem['celery_pool']['peak_mb']} MB.",
            "",
        ]
    lines += ["| target | value | wanted | holds |", "| --- | --- | --- | --- |"]
    for t in r.get("targets", []):
        lines.append(f"| {t['name']} | {t['value']} | {t['target']} | {'yes' if t['ok'] else '**no**'} |")
    return "\n".join(lines)
