"""Runs a corpus of read-only statements against SluiceDB and a real PostgreSQL 15 and compares
what libpq receives from each: column names, type OIDs and the bytes of every value, over the
simple protocol (text), the extended protocol with text results and with binary results. An
error is compared by its SQLSTATE.

usage: differential.py SLUICEDB_DSN POSTGRES_DSN CORPUS ACCEPTED

The corpus is SQL: statements end with ';' at the end of a line, '--' lines are comments, and
the statements under '-- setup' (up to the next '--' heading) run once on both servers first.
ACCEPTED lists the differences that are known and accepted, in blocks:

    sql: <the statement, whitespace collapsed>
    differs: names types values error     (the parts allowed to differ)
    why: <the reason>

Prints a report; exits 1 if a difference is not accepted or an accepted one no longer occurs.
"""

import re
import sys

from psycopg import pq

MODES = ("simple", "extended-text", "extended-binary")


def normalize(sql):
    return re.sub(r"\s+", " ", sql).strip().rstrip(";").strip()


def read_corpus(path):
    setup, statements, section, current = [], [], None, []
    for line in open(path, encoding="utf-8"):
        stripped = line.strip()
        if not current and stripped.startswith("--"):
            section = stripped[2:].strip().lower()
            continue
        if not stripped and not current:
            continue
        current.append(line)
        if stripped.endswith(";"):
            sql = normalize("".join(current))
            (setup if section == "setup" else statements).append(sql)
            current = []
    if current:
        raise SystemExit(f"{path}: unterminated statement: {''.join(current)}")
    return setup, statements


def read_accepted(path):
    accepted, block = {}, {}
    for line in list(open(path, encoding="utf-8")) + ["\n"]:
        line = line.rstrip("\n")
        if line.startswith("#"):
            continue
        if not line.strip():
            if block:
                if not {"sql", "differs", "why"} <= block.keys() or not block["why"].strip():
                    raise SystemExit(f"{path}: incomplete entry {block}")
                accepted[normalize(block["sql"])] = set(block["differs"].split())
                block = {}
            continue
        key, _, value = line.partition(":")
        block[key.strip()] = value.strip()
    return accepted


def connect(dsn):
    conn = pq.PGconn.connect(dsn.encode())
    if conn.status != pq.ConnStatus.OK:
        raise SystemExit(f"cannot connect to {dsn}: {conn.error_message.decode()}")
    return conn


def run(conn, sql, mode):
    if mode == "simple":
        result = conn.exec_(sql.encode())
    else:
        fmt = pq.Format.TEXT if mode == "extended-text" else pq.Format.BINARY
        result = conn.exec_params(sql.encode(), [], result_format=fmt)
    if result.status in (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.NONFATAL_ERROR):
        state = result.error_field(pq.DiagnosticField.SQLSTATE)
        message = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY)
        return {
            "error": (state or b"?????").decode(),
            "message": (message or b"").decode(errors="replace"),
        }
    return {
        "names": [result.fname(i).decode() for i in range(result.nfields)],
        "types": [result.ftype(i) for i in range(result.nfields)],
        "values": [
            [result.get_value(r, c) for c in range(result.nfields)]
            for r in range(result.ntuples)
        ],
    }


def differences(ours, theirs):
    if "error" in ours or "error" in theirs:
        return set() if ours.get("error") == theirs.get("error") else {"error"}
    return {part for part in ("names", "types", "values") if ours[part] != theirs[part]}


def show(answer):
    if "error" in answer:
        return f"ERROR {answer['error']}: {answer['message']}"
    values = [[v if v is None else bytes(v) for v in row] for row in answer["values"][:5]]
    return f"names={answer['names']} types={answer['types']} values={values}"


def main():
    ours_dsn, theirs_dsn, corpus_path, accepted_path = sys.argv[1:5]
    setup, statements = read_corpus(corpus_path)
    accepted = read_accepted(accepted_path)
    ours, theirs = connect(ours_dsn), connect(theirs_dsn)
    for sql in setup:
        for conn, name in ((ours, "SluiceDB"), (theirs, "PostgreSQL")):
            answer = run(conn, sql, "simple")
            if "error" in answer:
                raise SystemExit(f"setup failed on {name}: {sql}: {show(answer)}")
    unexplained, used = [], set()
    seen = set()
    for sql in statements:
        if sql in seen:
            raise SystemExit(f"{corpus_path}: statement twice: {sql}")
        seen.add(sql)
        allowed = accepted.get(sql, set())
        for mode in MODES:
            a, b = run(ours, sql, mode), run(theirs, sql, mode)
            differ = differences(a, b)
            if differ and differ <= allowed:
                used.add(sql)
            elif differ:
                unexplained.append(
                    f"[{mode}] {sql}\n  differs: {' '.join(sorted(differ))}"
                    f"\n  SluiceDB:   {show(a)}\n  PostgreSQL: {show(b)}"
                )
    stale = sorted(set(accepted) - used)
    for line in unexplained:
        print(line)
    for sql in stale:
        print(f"accepted but no longer different (remove it from {accepted_path}): {sql}")
    print(
        f"differential: {len(statements)} statements x {len(MODES)} modes; "
        f"{len(used)} accepted differences; {len(unexplained)} unexplained; "
        f"{len(stale)} stale"
    )
    sys.exit(1 if unexplained or stale else 0)


if __name__ == "__main__":
    main()
