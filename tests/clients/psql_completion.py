"""psql's tab completion and \\timing, typed into a real psql on a terminal (a pty): psql runs its
completion queries against the server (tables, views and materialized views after FROM, columns
after WHERE, relations after \\d) and readline completes what the user typed."""
import os
import pty
import re
import select
import sys
import time

port = sys.argv[1]
pid, fd = pty.fork()
if pid == 0:
    os.environ.update({"TERM": "dumb", "PAGER": "cat", "PSQL_HISTORY": "/dev/null", "INPUTRC": "/dev/null"})
    os.execvp("psql", ["psql", "-h", "127.0.0.1", "-p", port, "-U", "sluice", "-d", "sluice", "-X"])

output = b""


def read_until(pattern, timeout=10.0):
    """Reads the terminal until `pattern` (a regex) appears in what came since the last call."""
    global output
    start = len(output)
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                output += os.read(fd, 4096)
            except OSError:
                break
        # Without escape sequences and bells (readline rings one on an ambiguous completion).
        text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\x07", b"", output[start:]).decode(errors="replace")
        if re.search(pattern, text):
            return text
    raise AssertionError(f"no {pattern!r} in the terminal; it showed:\n{output[start:].decode(errors='replace')}")


def typed(keys, pattern):
    os.write(fd, keys.encode())
    return read_until(pattern)


read_until(r"sluice=[#>] $")
# A unique prefix completes in place: the materialized view, then its column.
typed("SELECT * FROM demo_clicks_1\t", r"demo_clicks_10s ")
typed("WHERE acti\t", r"action ")
typed("= 'click' LIMIT 1;\n", r"\(1 row\)")
# An ambiguous prefix completes to what the candidates share, the source's table `demo_clicks`
# and the view `demo_clicks_10s`, with no space after it: more than one name matched.
typed("SELECT * FROM demo_cl\t", r"demo_clicks$")
time.sleep(0.5)
assert not select.select([fd], [], [], 0)[0], "completion went on past demo_clicks"
typed("\x15", r"")  # clear the line (Ctrl-U)
typed("\n", r"sluice=[#>] $")
# \d completes relation names too.
typed("\\d demo_clicks_1\t", r"demo_clicks_10s ")
typed("\n", r"Materialized view \"public.demo_clicks_10s\"")
# \timing prints how long each statement took.
typed("\\timing on\n", r"Timing is on\.")
typed("SELECT count(*) FROM demo_clicks_10s WHERE events >= 0;\n", r"Time: \d+[.,]\d+ ms")
typed("\\q\n", r"")
os.waitpid(pid, 0)
print("psql completion ok")
