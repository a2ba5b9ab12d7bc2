"""``consentfetch report``: one self-contained HTML page describing a run.

The page shows what share of the URLs was downloaded, refused (by signal)
or failed (by reason), the hosts that opted out or failed most, the run's
consent profile, checks and configuration (from ``run.json``), and a few
example URLs per reason with their evidence.

Self-contained means: inline CSS, inline SVG charts, no scripts, no fonts,
images or styles from anywhere else. A Content-Security-Policy meta tag
(``default-src 'none'``) makes the browser enforce that: even a mistake in
escaping could neither run a script nor load a byte from the network.
Everything that comes from the data (URLs, captions, evidence, run.json
values) is hostile input and goes through :func:`_e` (``html.escape``).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from .._version import __version__
from ..consent.decision import Reason, status_of
from ..errors import OutputError
from .catalogue import STATUSES, reason_label, reason_wording
from .img2dataset import IMG2DATASET, IMG2DATASET_NOTE
from .read import completed_shard_count, read_columns, read_run, written_by
from .rechecks import latest_recheck
from .summary import summarize_audit

COLOURS = {
    "success": "#2f9e73",
    "disallowed": "#6753e0",
    "failed_to_download": "#e4683f",
    "failed_to_resize": "#eeaa2c",
}
STATUS_LABELS = {str(status): wording.label for status, wording in STATUSES.items()}
PROFILE_HELP: dict[str, str] = {
    "strict": "Every signal, most restrictive reading (noindex family, AI-crawler inference, "
              "legacy AI-preference labels, tdmrep.json denies up front).",
    "standard": "Only signals addressed to all bots or to our token; an image's own "
                "tdm-reservation header supersedes tdmrep.json.",
    "opt-in": "Download only where an explicit permission exists; everything else is "
              "no_opt_in.",
}

# Control characters have no business in a page, nor have bidirectional
# overrides (they would reorder a URL or a verdict on screen): shown as U+FFFD.
_CONTROL = {code: "\ufffd" for span in ((0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F),
                                        (0x7F, 0x9F), (0x202A, 0x202E), (0x2066, 0x2069))
            for code in range(span[0], span[1] + 1)}
_COLUMNS = ("key", "url", "caption", "status", "reason", "evidence", "http_status")
_CAPTION_CHARS = 300
_EVIDENCE_CHARS = 1200


def _e(value: Any) -> str:
    """Escape anything for HTML text and attribute values (quotes included)."""
    return html.escape(str(value).translate(_CONTROL), quote=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(reason: str | None) -> str:
    return reason_label(reason)


def _help(reason: str) -> str:
    wording = reason_wording(reason)
    return wording.help if wording else ""


def _status(reason: str) -> str:
    try:
        return str(status_of(Reason(reason)))
    except ValueError:
        return "failed_to_download"


def _pct(n: int, total: int) -> str:
    if not total:
        return "0%"
    share = n / total
    if 0 < share < 0.001:
        return "&lt;0.1%"
    return f"{share * 100:.1f}%"


# ---------------------------------------------------------------- public


def render_report(output_dir: str, *, examples: int = 3, top: int = 10,
                  storage_options: dict[str, Any] | None = None) -> str:
    """The HTML report of the run in ``output_dir`` (complete shards only), as a string.

    ``examples`` URLs are shown per reason, ``top`` hosts per ranking.
    Raises :class:`~consentfetch.errors.OutputError` if the folder does not
    exist or has no complete shard yet::

        >>> html_text = render_report("out/")
    """
    return _build(output_dir, examples, top, storage_options)[0]


def write_report(output_dir: str, path: str, *, examples: int = 3, top: int = 10,
                 storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write :func:`render_report`'s page to ``path`` (local or any fsspec URL).

    Returns the run's :func:`~consentfetch.audit.summarize_audit` dict::

        >>> write_report("out/", "report.html")["total"]
        38
    """
    page, summary = _build(output_dir, examples, top, storage_options)
    with fsspec.open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return summary


def _build(output_dir: str, examples: int, top: int,
           storage_options: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    table = read_columns(output_dir, _COLUMNS, storage_options)
    if table.num_rows == 0:
        raise OutputError(f"no complete shards in {output_dir} (yet): nothing to report")
    summary = summarize_audit(table, by="reason", top=top)
    run = read_run(output_dir, storage_options)
    if not run and written_by(output_dir, storage_options) == IMG2DATASET:
        run = {"written_by": IMG2DATASET}
    shards = completed_shard_count(output_dir, storage_options)
    page = _Page(output_dir, summary, run, shards, _examples(table, summary, examples),
                 latest_recheck(output_dir, storage_options)).html()
    return page, summary


def _examples(table: pa.Table, summary: Mapping[str, Any],
              n: int) -> dict[str, list[dict[str, Any]]]:
    wanted = [c for c in ("key", "url", "caption", "evidence", "http_status")
              if c in table.column_names]
    out: dict[str, list[dict[str, Any]]] = {}
    for reason in summary["by_reason"]:
        rows = table.filter(pc.fill_null(pc.equal(table["reason"], reason), False))
        out[reason] = rows.select(wanted).slice(0, n).to_pylist()
    return out


# ---------------------------------------------------------------- the page


class _Page:
    def __init__(self, output_dir: str, summary: Mapping[str, Any], run: Mapping[str, Any],
                 shards: int, examples: Mapping[str, list[dict[str, Any]]],
                 recheck: Mapping[str, Any] | None = None) -> None:
        self.output_dir = output_dir
        self.recheck = recheck
        self.s = summary
        self.run = run
        self.shards = shards
        self.examples = examples
        self.total: int = summary["total"]

    def html(self) -> str:
        parts = [self._head(), "<body>", self._header(), '<main class="wrap">',
                 self._callouts(), self._cards(), self._stacked(), self._reasons(),
                 self._hosts(), self._consent(), self._recheck(), self._examples(),
                 self._config(),
                 "</main>", self._footer(), "</body></html>"]
        return "\n".join(p for p in parts if p)

    # -- head and header ----------------------------------------------------
    def _head(self) -> str:
        return (
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">"
            "<meta name=\"referrer\" content=\"no-referrer\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"generator\" content=\"consentfetch {_e(__version__)}\">"
            f"<title>consentfetch report: {_e(self.output_dir)}</title>"
            f"<style>{_CSS}</style></head>")

    def _header(self) -> str:
        state = str(self.run.get("state") or "unknown")
        badge = {"complete": "ok", "running": "info", "interrupted": "warn"}.get(state, "info")
        state_text = "in progress" if state == "running" else state
        profile = self.run.get("consent_profile")
        meta = [f'<span class="badge {badge}">run {_e(state_text)}</span>']
        if profile:
            meta.append(f'<span class="badge profile">consent: {_e(profile)}</span>')
        facts = []
        started, finished = self.run.get("started_at"), self.run.get("finished_at")
        if started:
            facts.append(f"started {_e(_when(started))}")
        if finished:
            facts.append(f"finished {_e(_when(finished))}")
        duration = _duration(started, finished)
        if duration:
            facts.append(_e(duration))
        facts.append(f"{self.shards} complete shard{'s' if self.shards != 1 else ''}")
        if self.run.get("consentfetch_version"):
            facts.append(f"consentfetch {_e(self.run['consentfetch_version'])}")
        return (
            '<header class="top"><div class="wrap">'
            '<div class="brand"><span class="logo" aria-hidden="true"></span>consentfetch '
            '<span class="thin">run report</span></div>'
            f'<h1 class="path">{_e(self.output_dir)}</h1>'
            f'<div class="meta">{"".join(meta)}<span class="facts">'
            f'{" · ".join(facts)}</span></div></div></header>')

    def _callouts(self) -> str:
        out = []
        off = list(self.run.get("checks_off") or [])
        if off:
            out.append('<div class="callout warn" role="note"><strong>Consent checks turned '
                       'off in this run:</strong> '
                       + ", ".join(f"<code>{_e(c)}</code>" for c in off)
                       + ". Opt-outs that only these checks read were not honoured.</div>")
        if self.run.get("state") == "running":
            out.append('<div class="callout info" role="note">This run is still in progress: '
                       f'the numbers below cover the {self.shards} shard(s) completed so far.'
                       '</div>')
        elif self.run.get("written_by") == IMG2DATASET:
            out.append('<div class="callout warn" role="note">This folder was '
                       f'{_e(IMG2DATASET_NOTE)}.</div>')
        elif not self.run:
            out.append('<div class="callout info" role="note">No run.json in this folder: '
                       'the run\'s settings are unknown.</div>')
        return "".join(out)

    # -- totals --------------------------------------------------------------
    def _cards(self) -> str:
        by_status = self.s["by_status"]
        failed = by_status.get("failed_to_download", 0) + by_status.get("failed_to_resize", 0)
        cards = [
            ("total", "URLs audited so far" if self.run.get("state") == "running"
             else "URLs in the input", self.total, None, "#394056"),
            ("success", "Downloaded", by_status.get("success", 0), None, COLOURS["success"]),
            ("disallowed", "Opted out, not downloaded", by_status.get("disallowed", 0),
             None, COLOURS["disallowed"]),
            ("failed", "Failed", failed,
             f"{by_status.get('failed_to_download', 0)} download · "
             f"{by_status.get('failed_to_resize', 0)} resize", COLOURS["failed_to_download"]),
        ]
        html_cards = []
        for kind, label, n, sub, colour in cards:
            share = "" if kind == "total" else f'<span class="share">{_pct(n, self.total)}</span>'
            extra = f'<div class="sub">{_e(sub)}</div>' if sub else ""
            html_cards.append(
                f'<div class="card" style="--accent:{colour}"><div class="label">{_e(label)}'
                f'</div><div class="num">{n:,}{share}</div>{extra}</div>')
        return f'<section class="cards">{"".join(html_cards)}</section>'

    def _stacked(self) -> str:
        width, height = 1000, 30
        x = 0.0
        segs = []
        legend = []
        for status, n in self.s["by_status"].items():
            if not n:
                continue
            w = width * n / self.total
            colour = COLOURS.get(status, "#888")
            segs.append(f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" '
                        f'fill="{colour}"><title>{_e(STATUS_LABELS.get(status, status))}: '
                        f'{n}</title></rect>')
            x += w
            legend.append(f'<li><span class="dot" style="background:{colour}"></span>'
                          f'{_e(STATUS_LABELS.get(status, status))} <b>{n:,}</b> '
                          f'<span class="muted">{_pct(n, self.total)}</span></li>')
        svg = (f'<svg class="stack" viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
               'role="img" aria-label="share of URLs by outcome">'
               '<clipPath id="stack-round"><rect width="1000" height="30" rx="8"/></clipPath>'
               f'<g clip-path="url(#stack-round)">{"".join(segs)}</g></svg>')
        return ('<section class="panel"><h2>Where every URL went</h2>'
                f'{svg}<ul class="legend">{"".join(legend)}</ul></section>')

    def _reasons(self) -> str:
        refused = [(r, n) for r, n in self.s["by_reason"].items() if _status(r) == "disallowed"]
        failed = [(r, n) for r, n in self.s["by_reason"].items() if _status(r) != "disallowed"]
        left = _bar_chart(refused, self.total, lambda r: COLOURS["disallowed"]) if refused \
            else '<p class="empty">No URL was refused for a consent reason.</p>'
        right = _bar_chart(failed, self.total, lambda r: COLOURS[_status(r)]) if failed \
            else '<p class="empty">No URL failed.</p>'
        return ('<div class="grid2">'
                '<section class="panel"><h2>Opt-outs honoured, by signal</h2>'
                f'<p class="hint">Share of all URLs.</p>{left}</section>'
                '<section class="panel"><h2>Failures, by reason</h2>'
                f'<p class="hint">Share of all URLs.</p>{right}</section></div>')

    # -- hosts ---------------------------------------------------------------
    def _hosts(self) -> str:
        tops = self.s["top_hosts"]
        return (_host_table("Hosts that opted out most", tops["opted_out"], "disallowed",
                            COLOURS["disallowed"], "No host opted out.")
                + _host_table("Hosts that failed most", tops["failed"], "failed",
                              COLOURS["failed_to_download"], "No host failed."))

    # -- consent -------------------------------------------------------------
    def _consent(self) -> str:
        run = self.run
        profile = str(run.get("consent_profile") or "unknown")
        performed = list(run.get("checks_performed") or [])
        off = list(run.get("checks_off") or [])
        on_chips = "".join(f'<span class="chip on">{_e(c)}</span>' for c in performed) \
            or '<span class="muted">not recorded</span>'
        off_chips = "".join(f'<span class="chip off">{_e(c)}</span>' for c in off) \
            or '<span class="chip none">none: every check was on</span>'
        rows = [
            ("Consent profile", f'<b>{_e(profile)}</b> <span class="muted">'
                                f'{_e(PROFILE_HELP.get(profile, ""))}</span>'),
            ("Checks performed", on_chips),
            ("Checks turned off", off_chips),
            ("User agent", f'<code>{_e(run.get("user_agent") or "not recorded")}</code>'),
        ]
        body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
        return ('<section class="panel"><h2>Consent settings of this run</h2>'
                f'<table class="kv">{body}</table></section>')

    # -- the latest recheck -------------------------------------------------------
    def _recheck(self) -> str:
        r = self.recheck
        if not r:
            return ""
        counts = r.get("counts") or {}
        withdrawn = (r.get("reasons") or {}).get("disallowed") or {}
        rows = [("Rechecked", f'{_e(_when(r.get("finished_at")))} '
                              f'<span class="muted">(profile {_e(r.get("consent_profile"))}, '
                              f'{"with" if r.get("headers") else "without"} --headers)</span>'),
                ("Consent still holds", _e(counts.get("success", 0))),
                ("Withdrawn", _e(counts.get("disallowed", 0)) + "".join(
                    f' <span class="chip off">{_e(k)} {_e(n)}</span>'
                    for k, n in sorted(withdrawn.items(), key=lambda kv: -kv[1]))),
                ("Serving other bytes", _e(counts.get("changed", 0))),
                ("Could not be asked", _e(counts.get("failed_to_download", 0)))]
        notes = "".join(f'<p class="hint">{_e(r[k])}</p>'
                        for k in ("robots_unreachable_note", "hops_note") if r.get(k))
        body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
        return ('<section class="panel"><h2>Consent checked again: the latest recheck</h2>'
                f'<p class="hint">{_e(r.get("recheck_file"))}: the downloaded samples, '
                f'decided again as of that date.</p><table class="kv">{body}</table>'
                f'{notes}</section>')

    # -- examples ------------------------------------------------------------
    def _examples(self) -> str:
        if not self.examples:
            return ""
        order = sorted(self.examples, key=lambda r: (
            ["disallowed", "failed_to_download", "failed_to_resize"].index(_status(r)),
            -self.s["by_reason"][r], r))
        blocks = []
        for reason in order:
            status = _status(reason)
            n = self.s["by_reason"][reason]
            items = "".join(_example(row) for row in self.examples[reason])
            more = n - len(self.examples[reason])
            more_html = f'<p class="more">… and {more:,} more</p>' if more > 0 else ""
            help_text = _help(reason)
            blocks.append(
                f'<article class="reason" style="--accent:{COLOURS.get(status, "#888")}">'
                f'<header><span class="dot" style="background:{COLOURS.get(status, "#888")}">'
                f'</span><h3>{_e(_label(reason))}</h3><code class="code">{_e(reason)}</code>'
                f'<span class="count">{n:,} URL{"s" if n != 1 else ""}</span></header>'
                + (f'<p class="muted help">{_e(help_text)}</p>' if help_text else "")
                + f'<ol class="examples">{items}</ol>{more_html}</article>')
        return ('<section class="panel"><h2>Examples, with their evidence</h2>'
                '<p class="hint">A few URLs per reason. Evidence is quoted as recorded in the '
                'audit; <code>consentfetch why URL OUTPUT_DIR</code> explains any URL.</p>'
                f'{"".join(blocks)}</section>')

    # -- configuration -------------------------------------------------------
    def _config(self) -> str:
        config = self.run.get("config")
        if not isinstance(config, Mapping) or not config:
            return ""
        general = [("input", self.run.get("input")), ("output", self.run.get("output"))]
        items = [(k, v) for k, v in general if v is not None] + list(config.items())
        cells = "".join(f'<div class="cfg"><dt>{_e(k)}</dt><dd>{_e(_value(v))}</dd></div>'
                        for k, v in items)
        return ('<section class="panel"><h2>Run configuration</h2>'
                '<p class="hint">From run.json, as the run was started.</p>'
                f'<dl class="config">{cells}</dl></section>')

    def _footer(self) -> str:
        now = datetime.now(UTC)
        return ('<footer class="wrap">Generated by consentfetch '
                f'{_e(__version__)} on {now:%Y-%m-%d %H:%M} UTC from {self.shards} complete '
                f'shard(s) of <code>{_e(self.output_dir)}</code>. This page is self-contained: '
                'it loads nothing from the network and runs no scripts.</footer>')


def _bar_chart(items: Sequence[tuple[str, int]], total: int,
               colour_of: Callable[[str], str]) -> str:
    """A horizontal bar chart in SVG: one row per (reason, count), longest bar = largest."""
    label_w, bar_w, value_w, row_h = 230, 260, 110, 30
    width = label_w + bar_w + value_w
    height = row_h * len(items) + 6
    biggest = max(n for _, n in items) or 1
    rows = []
    for i, (reason, n) in enumerate(items):
        y = i * row_h + 3
        w = max(3.0, bar_w * n / biggest)
        label = _clip(_label(reason), 34)
        rows.append(
            f'<g><title>{_e(reason)}: {n}</title>'
            f'<text class="lbl" x="{label_w - 12}" y="{y + 19}" text-anchor="end">'
            f'{_e(label)}</text>'
            f'<rect x="{label_w}" y="{y + 6}" width="{bar_w}" height="16" rx="4" '
            'fill="#eef0f6"/>'
            f'<rect x="{label_w}" y="{y + 6}" width="{w:.1f}" height="16" rx="4" '
            f'fill="{colour_of(reason)}"/>'
            f'<text class="val" x="{label_w + bar_w + 10}" y="{y + 19}">{n:,} '
            f'<tspan class="pct">({_pct(n, total)})</tspan></text></g>')
    return (f'<svg class="bars" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="counts by reason">{"".join(rows)}</svg>')


def _host_table(title: str, hosts: Iterable[Mapping[str, Any]], field: str, colour: str,
                empty: str) -> str:
    rows = []
    for h in hosts:
        n, urls = h[field], h["urls"]
        kinds = [(r, c) for r, c in h["reasons"].items()
                 if (_status(r) == "disallowed") == (field == "disallowed")]
        signals = "".join(f"<span>{_e(_label(r))} <span class=\"muted\">{c:,}</span></span>"
                          for r, c in kinds[:4])
        share = n / urls if urls else 0
        rows.append(
            f'<tr><td class="host">{_e(h["host"] or "(no host)")}</td>'
            f'<td class="n">{n:,}<span class="muted"> of {urls:,}</span></td>'
            f'<td class="barcell"><span class="minibar"><span style="width:{share * 100:.1f}%;'
            f'background:{colour}"></span></span><span class="muted">{_pct(n, urls)}</span>'
            f'</td><td class="sig">{signals}</td></tr>')
    if not rows:
        return f'<section class="panel"><h2>{_e(title)}</h2><p class="empty">{_e(empty)}</p>' \
               '</section>'
    head = ("<tr><th>host</th><th>"
            + ("opted out" if field == "disallowed" else "failed")
            + "</th><th>share of host</th><th>main "
            + ("signals" if field == "disallowed" else "reasons") + "</th></tr>")
    return (f'<section class="panel"><h2>{_e(title)}</h2><table class="hosts">'
            f'<thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></section>')


def _example(row: Mapping[str, Any]) -> str:
    caption = row.get("caption")
    cap = f'<div class="cap">“{_e(_clip(str(caption), _CAPTION_CHARS))}”</div>' \
        if caption else ""
    evidence = row.get("evidence")
    ev = f'<div class="ev">{_e(_clip(str(evidence), _EVIDENCE_CHARS))}</div>' \
        if evidence else '<div class="ev muted">no evidence recorded</div>'
    key = row.get("key")
    key_html = f'<span class="key">{_e(key)}</span>' if key else ""
    return (f'<li><div class="url">{key_html}<span>{_e(row.get("url") or "")}</span></div>'
            f'{cap}{ev}</li>')


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "—"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "—"
    return str(value)


def _when(value: Any) -> str:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _duration(start: Any, end: Any) -> str | None:
    try:
        seconds = (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))) \
            .total_seconds()
    except (TypeError, ValueError):
        return None
    if seconds < 0:
        return None
    if seconds < 60:
        return f"took {seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"took {hours} h {minutes} min" if hours else f"took {minutes} min {secs} s"


_CSS = """
:root{--ink:#1d2333;--muted:#6b7285;--line:#e4e7ef;--bg:#f5f6fa;--panel:#fff;
--violet:#6753e0;color-scheme:light}
*{box-sizing:border-box}
html{background:var(--bg)}
body{margin:0;color:var(--ink);font:15px/1.5 "Liberation Sans","DejaVu Sans",
"Helvetica Neue",Arial,sans-serif}
code,.url,.ev,.path,.key,.code{font-family:"DejaVu Sans Mono","Liberation Mono",Menlo,
Consolas,monospace}
.wrap{max-width:1180px;margin:0 auto;padding:0 28px}
header.top{background:linear-gradient(120deg,#1f2540 0%,#2c2a5e 60%,#45338a 100%);
color:#fff;padding:26px 0 24px}
.brand{font-weight:700;letter-spacing:.02em;font-size:15px;opacity:.95;display:flex;
align-items:center;gap:9px}
.brand .thin{font-weight:400;opacity:.75}
.logo{width:18px;height:18px;border-radius:5px;background:conic-gradient(#2f9e73 0 45%,
#6753e0 0 85%,#e4683f 0 95%,#eeaa2c 0);display:inline-block}
h1.path{font-size:22px;font-weight:600;margin:10px 0 12px;overflow-wrap:anywhere}
.meta{display:flex;flex-wrap:wrap;gap:8px;align-items:center;font-size:13px}
.facts{opacity:.8;margin-left:6px}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12px;
font-weight:600;letter-spacing:.02em;background:rgba(255,255,255,.14)}
.badge.ok{background:#2f9e73}.badge.info{background:#3b6fd8}.badge.warn{background:#d9822b}
.badge.profile{background:rgba(255,255,255,.18)}
main.wrap{padding-top:22px;padding-bottom:8px}
.callout{border-radius:10px;padding:12px 16px;margin:0 0 16px;font-size:14px}
.callout.warn{background:#fff4e5;border:1px solid #f3c98b;color:#7a4306}
.callout.info{background:#eaf1ff;border:1px solid #b7ccf5;color:#1f3f80}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:14px;margin-bottom:16px}
.card{background:var(--panel);border:1px solid var(--line);border-radius:12px;
padding:16px 16px 14px;position:relative;overflow:hidden}
.card::before{content:"";position:absolute;left:0;right:0;top:0;height:4px;
background:var(--accent)}
.card .label{color:var(--muted);font-size:13px;font-weight:600}
.card .num{font-size:30px;font-weight:700;line-height:1.25;margin-top:2px}
.card .share{font-size:15px;font-weight:600;color:var(--accent);margin-left:8px}
.card .sub{color:var(--muted);font-size:12px}
.panel{background:var(--panel);border:1px solid var(--line);border-radius:12px;
padding:16px 20px 18px;margin-bottom:16px;min-width:0}
.panel h2{font-size:16px;margin:0 0 10px;letter-spacing:.01em}
.hint{color:var(--muted);font-size:13px;margin:-6px 0 10px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.grid2>.panel{margin-bottom:16px}
svg.stack{width:100%;height:30px;display:block}
svg.bars{width:100%;height:auto;display:block}
svg text{font-family:"Liberation Sans","DejaVu Sans",Arial,sans-serif;font-size:14px;
fill:#2a3040}
svg text.val{font-weight:700}
svg tspan.pct{font-weight:400;fill:#6b7285}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:6px 22px;padding:0;margin:12px 0 0;
font-size:14px}
.dot{display:inline-block;width:11px;height:11px;border-radius:3px;margin-right:7px;
vertical-align:-1px}
.muted{color:var(--muted)}
.empty{color:var(--muted);font-style:italic;margin:6px 0}
table{border-collapse:collapse;width:100%}
table.hosts th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;
color:var(--muted);text-align:left;font-weight:600;padding:4px 8px;
border-bottom:1px solid var(--line)}
table.hosts td{padding:7px 8px;border-bottom:1px solid #f0f1f6;font-size:14px;
vertical-align:middle}
table.hosts td.host{font-family:"DejaVu Sans Mono","Liberation Mono",monospace;
font-size:13px;overflow-wrap:anywhere;min-width:10em;width:30%}
table.hosts th{white-space:nowrap}
td.n{white-space:nowrap;font-weight:600}
td.barcell{white-space:nowrap;font-size:13px}
td.sig{font-size:13px;line-height:1.5}
td.sig>span{display:inline-block;white-space:nowrap;margin-right:14px}
.minibar{display:inline-block;width:90px;height:8px;border-radius:4px;background:#eef0f6;
margin-right:8px;vertical-align:1px;overflow:hidden}
.minibar span{display:block;height:100%}
table.kv th{width:190px;text-align:left;color:var(--muted);font-weight:600;font-size:13px;
padding:8px 10px 8px 0;vertical-align:top;border-bottom:1px solid #f0f1f6}
table.kv td{padding:7px 0;border-bottom:1px solid #f0f1f6;font-size:14px;
overflow-wrap:anywhere}
.chip{display:inline-block;font-size:12.5px;padding:2px 9px;border-radius:999px;
margin:2px 6px 2px 0;font-family:"DejaVu Sans Mono","Liberation Mono",monospace}
.chip.on{background:#e6f5ee;color:#1e6e4f;border:1px solid #bfe5d3}
.chip.on::before{content:"\\2713  "}
.chip.off{background:#fdecea;color:#a12a1c;border:1px solid #f4c2bb}
.chip.off::before{content:"\\2715  "}
.chip.none{background:#f3f4f8;color:var(--muted);border:1px solid var(--line);
font-family:inherit}
article.reason{border:1px solid var(--line);border-left:4px solid var(--accent);
border-radius:10px;padding:10px 14px 8px;margin:12px 0}
article.reason header{display:flex;align-items:center;gap:8px;flex-wrap:wrap}
article.reason h3{font-size:15px;margin:0}
.code{font-size:12px;background:#f3f4f8;border-radius:5px;padding:1px 6px;color:#465069}
.count{margin-left:auto;font-size:13px;color:var(--muted);font-weight:600}
.help{margin:4px 0 2px;font-size:13px}
ol.examples{margin:6px 0 4px;padding-left:22px}
ol.examples li{margin:8px 0;padding-left:2px}
.url{font-size:13px;overflow-wrap:anywhere;color:#1d2a55}
.key{display:inline-block;font-size:11px;color:var(--muted);background:#f3f4f8;
border-radius:4px;padding:0 5px;margin-right:8px}
.cap{font-size:13px;color:#4a5168;font-style:italic;overflow-wrap:anywhere}
.ev{font-size:12.5px;background:#f7f7fb;border:1px solid #eceef5;border-radius:6px;
padding:5px 8px;margin-top:4px;overflow-wrap:anywhere;white-space:pre-wrap;color:#30374b}
.more{color:var(--muted);font-size:13px;margin:0 0 4px 22px}
dl.config{display:grid;grid-template-columns:repeat(3,1fr);gap:0 22px;margin:0}
.cfg{display:flex;justify-content:space-between;gap:10px;padding:5px 0;
border-bottom:1px solid #f0f1f6;font-size:13px;min-width:0}
.cfg dt{color:var(--muted);white-space:nowrap}
.cfg dd{margin:0;text-align:right;overflow-wrap:anywhere;
font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:12.5px}
footer{color:var(--muted);font-size:12.5px;padding:6px 28px 30px}
@media (max-width:900px){.cards{grid-template-columns:repeat(2,1fr)}
.grid2{grid-template-columns:1fr}dl.config{grid-template-columns:1fr 1fr}}
@media print{html{background:#fff}header.top{-webkit-print-color-adjust:exact;
print-color-adjust:exact}.panel{break-inside:avoid}}
"""
