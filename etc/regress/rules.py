"""The rules of etc/pgpool-regress, apart from its work: the options, which tests run, each
run's deadline and snapshot time, when a failed test runs again, what a pgpool.log names as a
crash, each test's verdict, the summary line and the exit code.

Pure: no files, no processes, no clock. etc/regress/run.py does the work with them and
etc/pgpool-regress the namespaces; etc/regress/test_rules.py tests every rule (etc/test runs it).
"""

import re
from collections import namedtuple

# The CI subset: the tests issue 13 asks for, and the other quick ones that exercise the paths
# our patches and launcher touch (failover, health check, extended protocol). About 8.5 minutes
# on 2 cores (docs/pgpool-regress.md, "The CI subset").
CI_TESTS = (
    "001.load_balance", "003.failover", "009.sql_comments", "023.ssl_connection",
    "027.auto_failback", "037.failover_session", "111.cancel_query",
    "119.memory_leak_extended", "126.copy_hang", "129.multi_prepare",
)

# regress.sh's own deadline per test.
DEFAULT_DEADLINE = 300

# Several of the suite's tests are timing-bound (119 reads a child's size from `ps` right after
# a pgbench run, and finds no idle child when the machine is busy; 027 sleeps for fixed times).
# In --ci a test that failed without a crash runs again, up to this many runs in all, and counts
# as passed only if its last run passes. The full suite never retries: it is the gate, and a
# flaky test there is a finding.
CI_RUNS = 3

# timeout(1) exits 124 when the deadline stopped test.sh, and 137 (128 + SIGKILL) when test.sh
# outlived the grace after it (timeout -k).
DEADLINE_CODES = (124, 137)

# How pgpool's log names a crashed process, matched per line without regard to case. Not
# "segfault": a test's path may hold the word (124.bug700_memqcache_segfault did, and was once
# a false alarm). "signal 6" but not "signal 60".
CRASH = re.compile(r"signal 11|signal 6(?:[^0-9]|$)|segmentation fault|ERROR: AddressSanitizer",
                   re.IGNORECASE)

# The test that links a program from the built source tree's objects: the tree is built (about
# a minute) only when it is to run.
NEEDS_BUILT_SOURCE = "010.rewrite_timestamp"


class UsageError(Exception):
    """A command line or a test name that cannot be run: the message, and exit status 2."""


Options = namedtuple("Options", "flavor deadline keep list ci tests help")


def parse_args(argv):
    """The options as the user gave them (see the script's header). --help stops the parsing
    where it stands, as a usage error before it would have."""
    flavor, deadline, keep, listing, ci, tests = "ours", DEFAULT_DEADLINE, False, False, False, []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--stock":
            flavor = "stock"
        elif arg == "--asan":
            flavor = "asan"
        elif arg == "--ci":
            ci = True
        elif arg == "--timeout" or arg.startswith("--timeout="):
            if arg == "--timeout":
                if not args:
                    raise UsageError("--timeout needs seconds")
                value = args.pop(0)
            else:
                value = arg[len("--timeout="):]
            deadline = parse_deadline(value)
        elif arg == "--keep":
            keep = True
        elif arg == "--list":
            listing = True
        elif arg in ("-h", "--help"):
            return Options(flavor, deadline, keep, listing, ci, tests, True)
        elif arg.startswith("-"):
            raise UsageError("unknown option %s (see --help)" % arg)
        else:
            tests.append(arg)
    # The CI subset comes after the named tests, as given.
    if ci:
        tests.extend(CI_TESTS)
    return Options(flavor, deadline, keep, listing, ci, tests, False)


def parse_deadline(value):
    """--timeout's seconds: a whole number above 0 (0 would be timeout(1)'s "no deadline")."""
    if not value.isdigit() or int(value) == 0:
        raise UsageError("--timeout needs a whole number of seconds above 0, not '%s'" % value)
    return int(value)


def select(asked, available):
    """The tests to run, in the order asked: each TEST is a directory name or a unique part of
    one; an exact name wins over the names it is part of. None asked: all of them, sorted."""
    if not asked:
        return sorted(available)
    chosen = []
    for part in asked:
        if part in available:
            chosen.append(part)
            continue
        matches = [name for name in sorted(available) if part in name]
        if len(matches) != 1:
            listed = ": " + " ".join(matches) if matches else ""
            raise UsageError("'%s' names %d tests%s" % (part, len(matches), listed))
        chosen.append(matches[0])
    return chosen


def needs_built_source(tests):
    return NEEDS_BUILT_SOURCE in tests


def snapshot_at(deadline):
    """When, in seconds after a run starts, its processes are written down (log/NAME.hang): a
    hung test is gone once killed. 5 s before the deadline; half of it for a deadline of 10 s
    or less, where 5 s would leave the test little or no time."""
    return deadline - 5 if deadline > 10 else deadline // 2


def crash_lines(logs):
    """The lines of a test's pgpool.logs that name a crash, each as "FILE: LINE"; none for a
    test that did not crash. logs: (file relative to the test's directory, its text) pairs."""
    return ["%s: %s" % (path, line)
            for path, text in logs
            for line in text.splitlines()
            if CRASH.search(line)]


# One run of a test: test.sh's exit status (under timeout(1)), whether a pgpool.log named a
# crash, and its length in whole seconds.
Run = namedtuple("Run", "status crashed seconds")


def passed(run):
    return run.status == 0 and not run.crashed


def runs_again(run, number, ci):
    """Whether the run numbered `number` (from 1) is followed by another: only in --ci, only
    after a failure that is not a crash (a crash is never luck), at most CI_RUNS runs."""
    return ci and not passed(run) and not run.crashed and number < CI_RUNS


def run_test(attempt, before_again, ci):
    """Runs a test by the retry rule and returns its runs, the last one deciding. attempt(n)
    makes run n (from 1) and returns its Run; before_again(n, run) is called between run n and
    run n + 1, to set the earlier run's logs aside."""
    runs = []
    number = 1
    while True:
        run = attempt(number)
        runs.append(run)
        if not runs_again(run, number, ci):
            return runs
        before_again(number, run)
        number += 1


def verdict(runs):
    """"ok", "timeout" or "failed", from the last run: a crash fails a test that test.sh passed;
    a run stopped by its deadline is a timeout, crash or not."""
    last = runs[-1]
    if passed(last):
        return "ok"
    if last.status in DEADLINE_CODES:
        return "timeout"
    return "failed"


def result_line(name, runs):
    """The line printed for a test: "ok NAME", "failed NAME" or "timeout NAME", with the run
    that decided and where the earlier ones are when it ran more than once."""
    line = "%s %s" % (verdict(runs), name)
    if len(runs) > 1:
        line += " (on run %d; the earlier: log/%s.run*)" % (len(runs), name)
    return line


def summary(verdicts):
    """The last line and the exit status: timeouts count as failed; 1 when any failed."""
    ok = sum(1 for v in verdicts if v == "ok")
    failed = len(verdicts) - ok
    return "%d passed, %d failed" % (ok, failed), 0 if failed == 0 else 1


def duration(seconds):
    return "%d min %d s" % (seconds // 60, seconds % 60)


def help_text(script):
    """--help: the script's header comment, from its second line to `set -e`, without "# "."""
    lines = []
    for line in script.splitlines()[1:]:
        if line.startswith("set -e"):
            break
        lines.append(re.sub(r"^# ?", "", line))
    return "\n".join(lines) + "\n"
