"""The example Grafana dashboard (examples/grafana/dashboards/sluicedb-demo.json) against the demo
pipeline: every panel's SQL, with its macros expanded as Grafana's PostgreSQL data source does
(macros.go: RFC 3339 times with nanoseconds, floor(extract(epoch ...))), runs in text and binary
form, has the columns its panel format needs, and answers what this script computes from the
demo's raw rows. The time range ends well behind the newest event, so every window in it is
closed and every row in it has arrived."""
import datetime
import json
import pathlib
import re
import sys
import time
from collections import Counter, defaultdict

import psycopg

port = int(sys.argv[1])
dashboard = json.loads(
    (pathlib.Path(__file__).parents[2] / "examples/grafana/dashboards/sluicedb-demo.json").read_text()
)
conn = psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True)


def rfc3339nano(t):
    """Go's time.RFC3339Nano in UTC: fraction without trailing zeros, 'Z'."""
    text = t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def seconds(interval):
    number, unit = re.fullmatch(r"(\d+)([smh])", interval).groups()
    return int(number) * {"s": 1, "m": 60, "h": 3600}[unit]


def expand(sql, lo, hi):
    """Grafana's macro engine for the macros the dashboard uses."""
    def macro(match):
        name, args = match.group(1), [a.strip() for a in match.group(2).split(",")] if match.group(2) else []
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339nano(lo)}' AND '{rfc3339nano(hi)}'"
        if name == "__timeGroupAlias":
            s = seconds(args[1].strip("'"))
            return f'floor(extract(epoch from {args[0]})/{s})*{s} AS "time"'
        raise AssertionError(f"the dashboard uses a macro this replay does not know: {name}")

    return re.sub(r"\$(__\w+)\(([^)]*)\)", macro, sql)


# Wait for 20 s of events: the first windows are then closed and final.
deadline = time.time() + 60
while True:
    first, newest = conn.execute("SELECT min(ts), max(ts) FROM demo_clicks").fetchone()
    if first is not None and newest - first >= datetime.timedelta(seconds=20):
        break
    assert time.time() < deadline, "the demo produced less than 20 s of events in 60 s"
    time.sleep(1)
# Out-of-orderness is at most 3 s and windows close 5 s after their end: everything up to
# `hi` is in the table and final in the view.
hi = newest - datetime.timedelta(seconds=8)
lo = hi - datetime.timedelta(minutes=15)
raw = conn.execute(
    "SELECT ts, action, page, user_id, amount FROM demo_clicks WHERE ts BETWEEN %s AND %s", [lo, hi]
).fetchall()
assert raw, "no demo rows in the range"


def window_of(ts):
    epoch = int(ts.timestamp()) // 10 * 10
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)


def closed(ts):
    return ts + datetime.timedelta(seconds=10) <= hi


per_window = defaultdict(list)
for ts, action, page, user, amount in raw:
    per_window[(window_of(ts), action)].append((user, amount))
expected = {
    1: {(w, a): len(rows) for (w, a), rows in per_window.items() if closed(w)},
    3: {(w, a): len({u for u, _ in rows}) for (w, a), rows in per_window.items() if closed(w)},
}
revenue = Counter()
for (w, _), rows in per_window.items():
    if closed(w):
        revenue[w] += sum(a for _, a in rows)
purchases = Counter(int(ts.timestamp()) // 60 * 60 for ts, action, *_ in raw if action == "purchase")
pages = defaultdict(lambda: [0, set(), 0.0, False])
for ts, action, page, user, amount in raw:
    entry = pages[page]
    entry[0] += 1
    entry[1].add(user)
    if action == "purchase":
        entry[2] += amount
        entry[3] = True


def check(panel, rows, names):
    pid = panel["id"]
    fmt = panel["targets"][0]["format"]
    if fmt == "time_series":
        assert names[0] == "time", (panel["title"], names)
    if pid in (1, 3):
        assert names == ["time", "metric", "events" if pid == 1 else "users"], names
        got = {(t, a): v for t, a, v in rows if closed(t)}
        return got == expected[pid] or (got, expected[pid])
    if pid == 2:
        got = {t: v for t, v in rows if closed(t)}
        same = got.keys() == revenue.keys() and all(abs(got[t] - revenue[t]) < 1e-6 for t in got)
        return same or (got, dict(revenue))
    if pid == 4:
        got = {int(t): n for t, n in rows}
        return got == dict(purchases) or (got, dict(purchases))
    if pid == 5:
        return rows == [(len(raw),)] or (rows, len(raw))
    if pid == 6:
        assert names == ["page", "events", "users", "revenue"], names
        want = sorted(
            ((p, e[0], len(e[1]), e[2] if e[3] else None) for p, e in pages.items()), key=lambda r: -r[1]
        )
        got = [(p, n, u, r) for p, n, u, r in rows]
        close = len(got) == len(want) and all(
            g[:3] == w[:3] and (g[3] is None) == (w[3] is None) and (g[3] is None or abs(g[3] - w[3]) < 1e-6)
            for g, w in zip(sorted(got), sorted(want))
        )
        counts = [n for _, n, _, _ in got]
        return (close and counts == sorted(counts, reverse=True)) or (got, want)
    raise AssertionError(f"no check for panel {pid} ({panel['title']})")


assert [p["id"] for p in dashboard["panels"]] == [1, 2, 3, 4, 5, 6]
for panel in dashboard["panels"]:
    assert panel["datasource"]["uid"] == "sluicedb"
    sql = expand(panel["targets"][0]["rawSql"], lo, hi)
    for binary in (False, True):
        # A view's windows become final within a second of closing: retry briefly.
        for attempt in range(10):
            with conn.cursor(binary=binary) as cur:
                cur.execute(sql)
                names = [c.name for c in cur.description]
                verdict = check(panel, cur.fetchall(), names)
            if verdict is True:
                break
            time.sleep(1)
        assert verdict is True, (panel["title"], "binary" if binary else "text", sql, verdict)
print(f"grafana dashboard ok: {len(dashboard['panels'])} panels, {len(raw)} events")
