"""The match viewer: one self-contained HTML file holding a run's leaderboard and every judgment behind it.

This module owns:

- ``viewer_data``: the run store's questions, answers and judgments, paired into matches exactly as the results
  were (same judge, mode, questions, models and orientation), as plain records ready to embed;
- ``match_id``: the stable link of a match (``q81-t2-dpo-b0.1``: question, turn, candidate; ``-vs-<other>`` for a
  head-to-head match between two candidates);
- ``embed_json``: JSON that is safe inside a ``<script>`` element (``<``, ``>`` and ``&`` escaped, so model text can
  never close the block or open a comment);
- ``leaderboard_html``: the leaderboard model (``evalsuite.report.leaderboard.build_leaderboard``, the one
  ``leaderboard.md`` is rendered from) as HTML, so the viewer shows the same figures without computing a statistic
  twice or reading the markdown back;
- ``build_viewer`` / ``write_viewer``: the page itself.

The page opens from disk with no server and no network (a Content-Security-Policy forbids every fetch); plots are
inline PNGs when matplotlib is installed. Rows are rendered lazily from the embedded JSON by plain JS (no
framework), which inserts every answer, question and judge output as text (``textContent``), never as markup.
"""

from __future__ import annotations

import base64
import html
import json
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from evalsuite.errors import InputError
from evalsuite.store.atomic import atomic_write_text
from evalsuite.judge.swap import build_matches, match_error_reason
from evalsuite.records import Judgment, Match
from evalsuite.report.leaderboard import Block, Leaderboard, Note, Section, Table, build_leaderboard
from evalsuite.report.results import Results
from evalsuite.report.build import orient_to
from evalsuite.store import DB_NAME, RunStore

__all__ = [
    "VIEWER_FILE",
    "ViewerJudgment",
    "ViewerMatch",
    "build_viewer",
    "embed_json",
    "leaderboard_html",
    "match_id",
    "viewer_data",
    "write_viewer",
]

VIEWER_FILE = "viewer.html"

# Sort rank of a match in the list: the ones a reader should check first come first.
_RANK = {"inconsistent": 0, "loss": 1, "error": 2, "tie": 3, "win": 4}
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ViewerJudgment:
    """One order of a match as the judge saw it: ``first`` was shown as A, ``second`` as B."""

    first: str
    second: str
    verdict: str  # A | B | tie | error
    favours: str  # the model the verdict picks, "tie", or "error"
    reason: str | None
    raw: str
    judge: str
    template: str


@dataclass(frozen=True)
class ViewerMatch:
    """A reconciled match, seen from ``x`` (the candidate; the earlier-listed one between two candidates)."""

    id: str
    question_id: str
    category: str
    turn: int
    x: str
    y: str
    result: str  # win | tie | loss | error, for x
    score: float | None
    inconsistent: bool
    error: str | None  # why there is no score (parse | api | missing), None when scored
    xy: ViewerJudgment | None  # x shown first
    yx: ViewerJudgment | None  # y shown first


def _id_part(text: str) -> str:
    return _ID_UNSAFE.sub("_", text).strip("_") or "_"


def match_id(question_id: str, turn: int, x: str, y: str, baseline: str) -> str:
    """The stable link of a match: ``q<question>-t<turn>-<candidate>`` (``-vs-<other>`` when ``y`` is no baseline).

    A question id that already starts with ``q`` is not prefixed again; characters outside ``[A-Za-z0-9._-]``
    become ``_``.

    >>> match_id("81", 2, "dpo-b0.1", "sft", "sft")
    'q81-t2-dpo-b0.1'
    >>> match_id("q007", 1, "dpo", "simpo", "sft")
    'q007-t1-dpo-vs-simpo'
    >>> match_id("mt bench/3", 1, "a b", "sft", "sft")
    'qmt_bench_3-t1-a_b'
    """
    q = _id_part(question_id)
    head = q if q[:1] in ("q", "Q") else "q" + q
    tail = "" if y == baseline else "-vs-" + _id_part(y)
    return f"{head}-t{turn}-{_id_part(x)}{tail}"


def _result(m: Match) -> str:
    if m.error or m.score is None:
        return "error"
    return "win" if m.score > 0.5 else "loss" if m.score < 0.5 else "tie"


def _favours(j: Judgment) -> str:
    if j.verdict == "A":
        return j.model_a
    if j.verdict == "B":
        return j.model_b
    return j.verdict  # tie | error


def _viewer_judgment(j: Judgment | None) -> ViewerJudgment | None:
    if j is None:
        return None
    return ViewerJudgment(j.model_a, j.model_b, j.verdict, _favours(j), j.reason, j.raw, j.judge, j.template)


def _sort_rank(m: ViewerMatch) -> int:
    return _RANK["inconsistent"] if m.inconsistent else _RANK[m.result]


# The most matches one page embeds by default: every match of a normal run (80 questions x 12 candidates x 2 turns is
# under 2,000), while a 100,000-question run would otherwise write a page of about 2 GB that no browser opens
# (docs/performance.md). Past it the page keeps the matches that come first in its order (inconsistent, losses,
# errors, ties, wins) and says how many it left out.
MAX_VIEWER_MATCHES = 20_000


def viewer_data(store: RunStore, results: Results, max_matches: int | None = MAX_VIEWER_MATCHES) -> dict[str, Any]:
    """Everything the page shows besides the leaderboard, as JSON-ready records.

    Matches are built from the store's judgments by the judge, reconciliation mode, questions and models named in
    ``results`` (the same pairing and orientation the results were computed from), then sorted: inconsistent
    first, then losses, errors, ties and wins; within a rank by benchmark order, turn and candidate. At most
    ``max_matches`` of them are kept, the first in that order (None or 0: all), with the answers and questions they
    need; ``matches_total`` says how many there were.
    """
    baseline: str = results.baseline
    candidates: list[str] = list(results.candidates)
    judge: str | None = results.info.judge
    mode: str = results.info.mode
    models = {baseline, *candidates}
    all_questions = store.questions()
    wanted = results.info.benchmark.question_ids
    order = [q for q in wanted if q in all_questions] if wanted else sorted(all_questions)
    questions = {qid: all_questions[qid] for qid in order}
    categories = {qid: q.category for qid, q in questions.items()}
    # a panel: every member's matches, each judgment box naming its judge (a match's link carries the judge's label)
    labels = [j.label or j.name for j in results.judges] if results.judges else [judge]
    matches = []
    for label in labels:
        judgments = [
            j for j in store.judgments(label)
            if j.question_id in questions and j.model_a in models and j.model_b in models
        ]
        judged = build_matches(judgments, categories, mode, orient_to(baseline, candidates))  # type: ignore[arg-type]
        matches += [(label, m) for m in judged]

    rows: list[ViewerMatch] = []
    seen: dict[str, int] = {}
    for label, m in matches:
        mid = match_id(m.question_id, m.turn, m.model_x, m.model_y, baseline)
        if results.judges:
            mid = f"{mid}-{_id_part(str(label))}"
        seen[mid] = seen.get(mid, 0) + 1
        if seen[mid] > 1:  # the same item under a second template: keep both, links stay unique
            mid = f"{mid}-{seen[mid]}"
        rows.append(
            ViewerMatch(
                id=mid, question_id=m.question_id, category=m.category, turn=m.turn, x=m.model_x, y=m.model_y,
                result=_result(m), score=m.score, inconsistent=m.inconsistent, error=match_error_reason(m),
                xy=_viewer_judgment(m.xy), yx=_viewer_judgment(m.yx),
            )
        )
    position = {qid: i for i, qid in enumerate(order)}
    cand_rank = {c: i for i, c in enumerate(candidates)}
    rows.sort(key=lambda r: (_sort_rank(r), position[r.question_id], r.turn, cand_rank.get(r.x, len(cand_rank)), r.y))

    total = len(rows)
    if max_matches and total > max_matches:
        rows = rows[:max_matches]
        shown = {r.question_id for r in rows}
        questions = {qid: q for qid, q in questions.items() if qid in shown}
    answers: dict[str, dict[str, list[str]]] = {}
    for model in sorted(models):
        answers[model] = {qid: list(a.turns) for qid, a in store.answers(model).items() if qid in questions}
    return {
        "matches_total": total,
        "baseline": baseline,
        "candidates": candidates,
        "judge": judge,
        "mode": mode,
        "questions": {
            qid: {"category": q.category, "turns": list(q.turns), "reference": list(q.reference) if q.reference else None}
            for qid, q in questions.items()
        },
        "answers": answers,
        "matches": [asdict(r) for r in rows],
    }


def embed_json(value: Any) -> str:
    """``value`` as JSON that can sit inside ``<script type="application/json">`` whatever its strings contain.

    ``<``, ``>`` and ``&`` only ever occur inside JSON strings, where their ``\\u`` escapes mean the same thing, so
    ``JSON.parse`` reads the value back unchanged while the HTML parser never sees ``</script`` or ``<!--``.

    >>> embed_json({"a": "</script><!--&"})
    '{"a":"\\\\u003c/script\\\\u003e\\\\u003c!--\\\\u0026"}'
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


# --- leaderboard: evalsuite.report.leaderboard's model as HTML ----------------------------------------------------

_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    """Escape ``text`` and render the model's two inline forms, ``code`` and **bold**.

    >>> _inline("`x<y>` & **b**")
    '<code>x&lt;y&gt;</code> &amp; <strong>b</strong>'
    """
    out: list[str] = []
    pos = 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        out.append(f"<code>{html.escape(m[1])}</code>" if m[1] is not None else f"<strong>{html.escape(m[2])}</strong>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _table_html(t: Table) -> str:
    aligns = ["right" if a == "r" else "left" for a in t.align]

    def row(cells: Sequence[str], tag: str) -> str:
        return "<tr>" + "".join(
            f'<{tag} class="{aligns[i] if i < len(aligns) else "left"}">{_inline(c)}</{tag}>' for i, c in enumerate(cells)
        ) + "</tr>"

    return ('<div class="table-wrap"><table><thead>' + row(t.header, "th") + "</thead><tbody>"
            + "".join(row(r, "td") for r in t.rows) + "</tbody></table></div>")


def _block_html(block: Block) -> str:
    if isinstance(block, Table):
        return _table_html(block)
    if isinstance(block, Note):
        return f"<blockquote><strong>{html.escape(block.label)}.</strong> {_inline(block.text)}</blockquote>"
    return f"<p>{_inline(block.text)}</p>"


_OPEN_SECTION_ROWS = 15  # a leaderboard section with more table rows than this starts folded


def _section_html(section: Section) -> str:
    """A section as a foldable ``<details>``, open unless its tables hold more than 15 rows (a sweep of many betas
    has long variant-vs-variant tables; the matches below should stay one scroll away)."""
    n_rows = sum(len(b.rows) for b in section.blocks if isinstance(b, Table))
    opened = " open" if n_rows <= _OPEN_SECTION_ROWS else ""
    return "\n".join([f'<details class="section"{opened}><summary><h2>{_inline(section.title)}</h2></summary>',
                      *(_block_html(b) for b in section.blocks), "</details>"])


def leaderboard_html(board: Leaderboard) -> str:
    """The leaderboard (``build_leaderboard``'s model, the one ``leaderboard.md`` is written from) as HTML.

    >>> from evalsuite.report.leaderboard import Table
    >>> leaderboard_html(Leaderboard("T", (), (Section("Tab", (Table(("a", "b"), (("`x<y>`", "1"),), "lr"),)),), "f"))
    '<h1>T</h1>\\n<details class="section" open><summary><h2>Tab</h2></summary>\\n<div class="table-wrap"><table><thead><tr><th class="left">a</th><th class="right">b</th></tr></thead><tbody><tr><td class="left"><code>x&lt;y&gt;</code></td><td class="right">1</td></tr></tbody></table></div>\\n</details>\\n<hr>\\n<p>f</p>'
    """
    return "\n".join([f"<h1>{_inline(board.title)}</h1>", *(_block_html(b) for b in board.intro),
                      *(_section_html(s) for s in board.sections), "<hr>", f"<p>{_inline(board.footer)}</p>"])


def _plot_images(results: Results) -> list[tuple[str, str]]:
    """(name, base64 PNG) of the report's plots; empty when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    from evalsuite.report.plots import write_plots

    with tempfile.TemporaryDirectory(prefix="evalsuite-plots-") as tmp:
        return [(p.stem, base64.b64encode(p.read_bytes()).decode("ascii")) for p in write_plots(results, Path(tmp))]


# --- the page ------------------------------------------------------------------------------------------------------

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

_CSS = """
:root { --fg:#1f2328; --muted:#656d76; --line:#d0d7de; --bg2:#f6f8fa; --win:#1a7f37; --loss:#cf222e; --tie:#6e7781;
  --err:#9a6700; --inc:#8250df; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
  margin: 0 auto; max-width: 1400px; padding: 16px 24px 64px; }
h1 { font-size: 22px; margin: 8px 0 12px; } h2 { font-size: 17px; margin: 24px 0 8px; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--bg2); padding: 1px 4px;
  border-radius: 4px; }
blockquote { margin: 8px 0; padding: 4px 12px; border-left: 4px solid var(--line); color: var(--muted); }
.table-wrap { overflow-x: auto; } table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; white-space: nowrap; } th { background: var(--bg2); }
.right { text-align: right; } .left { text-align: left; }
#leaderboard details > summary { cursor: pointer; color: var(--muted); margin: 8px 0; }
#leaderboard details.section > summary h2 { display: inline; color: var(--fg); }
#leaderboard details.section > summary { margin: 20px 0 8px; }
.plots img { max-width: 100%; height: auto; border: 1px solid var(--line); margin: 4px 8px 4px 0; max-height: 420px; }
#filters { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); padding: 8px 0;
  display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; z-index: 2; }
#filters label { white-space: nowrap; } #filters select { margin-left: 4px; }
#match-count { font-weight: 600; margin-left: auto; }
.match { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; scroll-margin-top: 64px; }
.match > summary { cursor: pointer; padding: 6px 10px; display: flex; gap: 10px; align-items: baseline; list-style: none; }
.match > summary::-webkit-details-marker { display: none; }
.match[open] > summary { background: var(--bg2); border-bottom: 1px solid var(--line); }
.match.target { outline: 2px solid var(--inc); }
.mid { font: 12px ui-monospace, Menlo, Consolas, monospace; color: var(--muted); min-width: 15em; }
.badge { font-size: 12px; font-weight: 600; border-radius: 10px; padding: 0 8px; color: #fff; }
.badge.win { background: var(--win); } .badge.loss { background: var(--loss); } .badge.tie { background: var(--tie); }
.badge.error { background: var(--err); } .badge.inconsistent { background: var(--inc); }
.body { padding: 8px 12px 12px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.box { border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; min-width: 0; }
.box h4 { margin: 2px 0 6px; font-size: 13px; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; font: 13px/1.4 ui-monospace, Menlo, Consolas, monospace;
  background: var(--bg2); padding: 6px 8px; border-radius: 4px; margin: 2px 0 8px; max-height: 28em; overflow: auto; }
.turnlabel { font-size: 12px; color: var(--muted); } .judged { font-weight: 600; color: var(--fg); }
.outcome { margin: 10px 0 0; font-weight: 600; }
.more { margin: 10px 0; }
.muted { color: var(--muted); }
"""

# Plain JS, no framework. Every string that came from a model, a question file or a judge goes through
# textContent (el()/text()); innerHTML is never used.
_JS = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("viewer-data").textContent);
  var PAGE = 100;
  var byId = Object.create(null);
  DATA.matches.forEach(function (m) { byId[m.id] = m; });
  var list = document.getElementById("matches");
  var countEl = document.getElementById("match-count");
  var moreBtn = document.getElementById("more");
  var f = {
    candidate: document.getElementById("f-candidate"), category: document.getElementById("f-category"),
    turn: document.getElementById("f-turn"), result: document.getElementById("f-result"),
    inconsistent: document.getElementById("f-inconsistent"), errors: document.getElementById("f-errors")
  };
  var filtered = [], shown = 0;
  var REASON = { parse: "no verdict found in the judge's output", api: "the API call failed after retries",
                 missing: "one of the two orders was never judged" };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function addOptions(select, values) {
    values.forEach(function (v) { var o = el("option", null, v); o.value = String(v); select.appendChild(o); });
  }
  function uniq(values) { var s = {}; return values.filter(function (v) { return s[v] ? false : (s[v] = true); }); }

  // the result seen from the selected candidate (a head-to-head match may list it second)
  function resultFor(m, who) {
    if (who && m.y === who) return m.result === "win" ? "loss" : m.result === "loss" ? "win" : m.result;
    return m.result;
  }
  function passes(m) {
    var c = f.candidate.value;
    if (c && m.x !== c && m.y !== c) return false;
    if (f.category.value && m.category !== f.category.value) return false;
    if (f.turn.value && String(m.turn) !== f.turn.value) return false;
    if (f.result.value && resultFor(m, c) !== f.result.value) return false;
    if (f.inconsistent.checked && !m.inconsistent) return false;
    if (f.errors.checked && m.result !== "error") return false;
    return true;
  }

  function textBlock(parent, label, text, cls) {
    if (label) parent.appendChild(el("div", "turnlabel" + (cls ? " " + cls : ""), label));
    parent.appendChild(el("div", "text", text === undefined || text === null ? "(none)" : text));
  }
  function outcomeText(m) {
    if (m.result === "error") return "Error: " + m.error + " \u2014 " + (REASON[m.error] || "the judgment failed") + "; excluded from the statistics.";
    var s = m.score === null ? "" : " (score " + m.score + " for " + m.x + ")";
    if (m.result === "tie") return "Tie" + s + (m.inconsistent ? ": the two orders disagree, so strict reconciliation calls it a tie." : ".");
    return (m.result === "win" ? m.x : m.y) + " wins" + s + (m.inconsistent ? "; the two orders disagree." : ".");
  }
  function judgmentBox(j, title) {
    var box = el("div", "box");
    box.appendChild(el("h4", null, title));
    if (!j) { box.appendChild(el("div", "muted", "Not judged (missing).")); return box; }
    var v = j.verdict === "error" ? "error (" + (j.reason || "?") + ")"
      : j.verdict + " \u2192 " + (j.favours === "tie" ? "tie" : j.favours);
    var p = el("div"); p.appendChild(el("strong", null, "Parsed verdict: ")); p.appendChild(document.createTextNode(v));
    box.appendChild(p);
    box.appendChild(el("div", "turnlabel", "A = " + j.first + ", B = " + j.second + " \u00b7 judge " + j.judge + " \u00b7 template " + j.template));
    textBlock(box, "Judge output", j.raw);
    return box;
  }
  function answerBox(model, m) {
    var box = el("div", "box");
    box.appendChild(el("h4", null, model + (model === DATA.baseline ? " (baseline)" : "")));
    var turns = (DATA.answers[model] || {})[m.question_id] || [];
    for (var t = 1; t <= m.turn; t++) {
      textBlock(box, "Answer, turn " + t + (t === m.turn ? " (judged)" : ""), turns[t - 1], t === m.turn ? "judged" : "");
    }
    return box;
  }
  function detail(m) {
    var body = el("div", "body");
    var q = DATA.questions[m.question_id] || { turns: [], reference: null };
    var qbox = el("div", "box");
    qbox.appendChild(el("h4", null, "Question " + m.question_id + " (" + m.category + ")"));
    q.turns.forEach(function (t, i) { textBlock(qbox, "User, turn " + (i + 1) + (i + 1 === m.turn ? " (judged)" : ""), t, i + 1 === m.turn ? "judged" : ""); });
    if (q.reference) q.reference.forEach(function (r, i) { textBlock(qbox, "Reference answer, turn " + (i + 1), r); });
    body.appendChild(qbox);
    var answers = el("div", "grid2"); answers.style.marginTop = "10px";
    answers.appendChild(answerBox(m.x, m)); answers.appendChild(answerBox(m.y, m));
    body.appendChild(answers);
    var judged = el("div", "grid2"); judged.style.marginTop = "10px";
    judged.appendChild(judgmentBox(m.xy, "Order 1: " + m.x + " shown first"));
    judged.appendChild(judgmentBox(m.yx, "Order 2: " + m.y + " shown first"));
    body.appendChild(judged);
    body.appendChild(el("div", "outcome", "Reconciled (" + DATA.mode + "): " + outcomeText(m)));
    var link = el("a", null, "link to this match"); link.href = "#" + m.id;
    body.appendChild(link);
    return body;
  }
  function row(m) {
    var d = el("details", "match"); d.id = m.id;
    var s = el("summary");
    s.appendChild(el("span", "mid", m.id));
    s.appendChild(el("span", null, m.x + " vs " + m.y));
    s.appendChild(el("span", "muted", "turn " + m.turn + " \u00b7 " + m.category));
    s.appendChild(el("span", "badge " + m.result, m.result === "error" ? "error: " + m.error : m.result));
    if (m.inconsistent) s.appendChild(el("span", "badge inconsistent", "inconsistent"));
    d.appendChild(s);
    d.addEventListener("toggle", function () {
      if (d.open && d.childNodes.length === 1) d.appendChild(detail(m));
    });
    return d;
  }
  function renderMore() {
    var end = Math.min(filtered.length, shown + PAGE), frag = document.createDocumentFragment();
    for (var i = shown; i < end; i++) frag.appendChild(row(filtered[i]));
    list.appendChild(frag);
    shown = end;
    moreBtn.hidden = shown >= filtered.length;
    moreBtn.textContent = "Show more (" + (filtered.length - shown) + " left)";
  }
  function apply() {
    filtered = DATA.matches.filter(passes);
    list.textContent = "";
    shown = 0;
    renderMore();
    countEl.textContent = filtered.length + " of " + DATA.matches.length + " matches";
    countEl.setAttribute("data-count", String(filtered.length));
  }
  function openFromHash() {
    var id = decodeURIComponent(location.hash.slice(1)), m = byId[id];
    if (!m) return;
    if (filtered.indexOf(m) < 0) {
      ["candidate", "category", "turn", "result"].forEach(function (k) { f[k].value = ""; });
      f.inconsistent.checked = f.errors.checked = false;
      apply();
    }
    var idx = filtered.indexOf(m);
    while (shown <= idx) renderMore();
    var node = document.getElementById(id);
    var old = list.querySelector(".match.target"); if (old) old.classList.remove("target");
    node.classList.add("target");
    node.open = true;
    node.scrollIntoView({ block: "start" });
  }

  addOptions(f.candidate, uniq(DATA.candidates.concat(DATA.matches.map(function (m) { return m.x; }))));
  addOptions(f.category, uniq(DATA.matches.map(function (m) { return m.category; })).sort());
  addOptions(f.turn, uniq(DATA.matches.map(function (m) { return m.turn; })).sort());
  ["candidate", "category", "turn", "result", "inconsistent", "errors"].forEach(function (k) { f[k].addEventListener("change", apply); });
  moreBtn.addEventListener("click", renderMore);
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (es) { if (es[0].isIntersecting && !moreBtn.hidden) renderMore(); }).observe(moreBtn);
  }
  window.addEventListener("hashchange", openFromHash);
  apply();
  openFromHash();
  window.__viewerReady = performance.now();  // navigation start -> first rows rendered and filters wired (bench_viewer.py)
  document.documentElement.setAttribute("data-ready", "1");
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<nav class="muted"><a href="#judgments">Every match &darr;</a></nav>
<section id="leaderboard">
{leaderboard}
{plots}
</section>
<section id="judgments">
<h2>Every match</h2>
<p class="muted">{summary} Sorted with inconsistent matches and losses first. Click a match to read the question,
both answers, both orders' judge outputs and the reconciled result; each has a stable link.</p>
<div id="filters">
<label>Candidate<select id="f-candidate"><option value="">all</option></select></label>
<label>Category<select id="f-category"><option value="">all</option></select></label>
<label>Turn<select id="f-turn"><option value="">all</option></select></label>
<label>Result<select id="f-result"><option value="">all</option><option value="win">win</option>
<option value="tie">tie</option><option value="loss">loss</option><option value="error">error</option></select></label>
<label><input type="checkbox" id="f-inconsistent"> inconsistent only</label>
<label><input type="checkbox" id="f-errors"> errors only</label>
<span id="match-count"></span>
</div>
<div id="matches"></div>
<button id="more" class="more" type="button" hidden>Show more</button>
</section>
<script type="application/json" id="viewer-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""


def build_viewer(results: Results, data: Mapping[str, Any], *, plots: bool = True) -> str:
    """The page: the leaderboard of ``results`` (plots inline when ``plots`` and matplotlib allow), then the
    matches of ``data`` (from ``viewer_data``)."""
    images = _plot_images(results) if plots else []
    plots_html = ""
    if images:
        plots_html = '<details open><summary>Plots</summary><div class="plots">' + "".join(
            f'<img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">' for name, b64 in images
        ) + "</div></details>"
    matches = data["matches"]
    n_inc = sum(1 for m in matches if m["inconsistent"])
    n_err = sum(1 for m in matches if m["result"] == "error")
    summary = (
        f"{len(matches)} matches ({sum((m['xy'] is not None) + (m['yx'] is not None) for m in matches)} judgments "
        f"by {data.get('judge')}, {data.get('mode')} reconciliation): {n_inc} inconsistent, {n_err} errors."
    )
    total = int(data.get("matches_total", len(matches)))
    if total > len(matches):
        summary += (f" Showing the first {len(matches)} of {total} matches (inconsistent, losses and errors first); "
                    "`evalsuite view --max-matches 0` writes them all.")
    return _PAGE.format(
        csp=_CSP,
        title=html.escape(f"evalsuite viewer: candidates vs {results.baseline}"),
        css=_CSS,
        leaderboard=leaderboard_html(build_leaderboard(results)),
        plots=plots_html,
        summary=html.escape(summary),
        data=embed_json(data),
        js=_JS,
    )


def write_viewer(run_dir: str | Path, results: Results, out: str | Path | None = None, *,
                 plots: bool = True, max_matches: int | None = MAX_VIEWER_MATCHES) -> Path:
    """Write the viewer of the run in ``run_dir`` (default ``run_dir/viewer.html``, atomically); returns its path.
    ``max_matches``: the most matches embedded (``viewer_data``)."""
    run_dir = Path(run_dir)
    if not (run_dir / DB_NAME).is_file():
        raise InputError(f"no run store {str(run_dir / DB_NAME)!r}", fix="pass the --run-dir of a finished compare")
    with RunStore(run_dir) as store:
        data = viewer_data(store, results, max_matches)
    page = build_viewer(results, data, plots=plots)
    path = Path(out) if out is not None else run_dir / VIEWER_FILE
    return atomic_write_text(path, page)
