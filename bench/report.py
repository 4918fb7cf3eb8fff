"""The performance targets checked against a run's results, and the table."""

from __future__ import annotations

from typing import Any

WEB_RSS_MB, CELERY_RSS_MB = 120, 150
ADMIN_P50_MS, ADMIN_P95_MS = 150, 300


def check_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: str, ok: bool) -> None:
        targets.append({"name": name, "value": value, "target": target, "ok": bool(ok)})

    if t := r.get("throughput"):
        add(
            "submit POST/s vs floor",
            t["post_ratio"],
            ">= 0.6 (and every POST a 303 that made a row)",
            t["post_ratio"] >= 0.6 and t["valid"],
        )
        add(
            "submit POST/s vs floor, worker stopped (web tier alone)",
            t["post_ratio_web_only"],
            ">= 0.6",
            t["post_ratio_web_only"] >= 0.6 and t["valid"],
        )
        add("GET /reset/ vs floor GET", t["get_ratio"], ">= 0.5", t["get_ratio"] >= 0.5)
    if a := r.get("ack_latency"):
        lat = a["latency_ms"]
        add("ack latency p50 (ms)", lat.get("p50"), "<= 500", lat.get("p50", 1e9) <= 500)
        add("ack latency p99 (ms)", lat.get("p99"), "<= 2000", lat.get("p99", 1e9) <= 2000)
        add(
            "acks lost / duplicated",
            f"{a['missing']} / {a['duplicated']}",
            "0 / 0",
            a["missing"] == 0 and a["duplicated"] == 0 and a["not_303"] == 0,
        )
    if e := r.get("email_throughput"):
        add("emails/s vs smtplib loop", e["ratio"], ">= 0.5", e["ratio"] >= 0.5)
    if s := r.get("admin_list"):
        for name, page in s["pages"].items():
            add(
                f"staff list {name} p50/p95 (ms)",
                f"{page['p50']} / {page['p95']}",
                f"<= {ADMIN_P50_MS} / {ADMIN_P95_MS}",
                page["p50"] <= ADMIN_P50_MS and page["p95"] <= ADMIN_P95_MS and page["statuses"] == [200],
            )
        add(
            "staff list queries independent of size",
            s["query_count_independent_of_size"],
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
    return {"rps": run["rps"], "p50_ms": run["latency_ms"]["p50"], "p99_ms": run["latency_ms"]["p99"]}


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
        b = t["median"]
        out["throughput"] = {
            "method": t["method"],
            "median_round": {name: _speed(run) for name, run in b.items()},
            "post_ratio": t["post_ratio"],
            "post_ratio_web_only": t["post_ratio_web_only"],
            "get_ratio": t["get_ratio"],
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


def _cell(run: dict[str, Any]) -> str:
    return f"{run['rps']}; {run['latency_ms']['p50']} / {run['latency_ms']['p99']}"


def markdown_table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Run {r['when']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; "
        f"load average {r['load_average_before'][0]} before, {r['load_average_after'][0]} after"
        + (" (--quick)" if r.get("quick") else ""),
        "",
    ]
    if t := r.get("throughput"):
        b = t["median"]
        lines += [
            "| /reset/ vs /floor/ | floor | ours | ratio (median round) |",
            "| --- | --- | --- | --- |",
            f"| POST (req/s; p50 / p99 ms) | {_cell(b['floor_post'])} | {_cell(b['ours_post'])} | {t['post_ratio']} |",
            f"| POST, Celery worker stopped (web tier alone) | {_cell(b['floor_post'])} | "
            f"{_cell(b['ours_post_web_only'])} | {t['post_ratio_web_only']} |",
            f"| GET (req/s; p50 / p99 ms) | {_cell(b['floor_get'])} | {_cell(b['ours_get'])} | {t['get_ratio']} |",
            f"| rows created by the POST runs | {b['floor_post']['rows_created']} | {b['ours_post']['rows_created']} "
            f"| all 303: {t['valid']} |",
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
            f"Email throughput, {e['worker']['emails']} queued at once: worker {e['worker']['per_second']}/s, "
            f"plain smtplib loop {e['smtplib_loop']['per_second']}/s (one connection; "
            f"{e['smtplib_loop_connection_per_message']['per_second']}/s with one per message): ratio {e['ratio']}.",
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
