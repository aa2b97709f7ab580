"""etc/pgpool-regress's driver, started by that script: it takes the options, runs each test by
the rules of etc/regress/rules.py, keeps the logs, and prints the results. The work it cannot
do as a plain process (the build and the suite's preparation, one run of a test in its own
namespaces) it asks of etc/pgpool-regress, one step at a time (--step, in its header).
"""

import os
import shutil
import subprocess
import sys
import time

import rules

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "etc", "pgpool-regress")


def say(message):
    print("-----> pgpool-regress: %s" % message, file=sys.stderr, flush=True)


def die(message):
    print(" !     pgpool-regress: %s" % message, file=sys.stderr, flush=True)
    sys.exit(2)


def step(*args, capture=False):
    """One step of etc/pgpool-regress; its own errors are already printed when it fails. A
    Ctrl-C reaches it too: wait for it to clean up rather than leave its namespace behind."""
    proc = subprocess.Popen([SCRIPT, "--step", *args],
                            stdout=subprocess.PIPE if capture else None, text=capture)
    try:
        out, _ = proc.communicate()
    except KeyboardInterrupt:
        proc.wait()
        raise
    return proc.returncode, out


def pgpool_logs(test_dir):
    """Every pgpool.log the test left (pgpool_setup names them pgpool.log, rotation adds
    suffixes), as (path relative to the test's directory, bytes), in path order."""
    found = []
    for top, dirs, files in os.walk(test_dir):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(top, f)
            if f.startswith("pgpool.log") and os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as fh:
                    found.append((os.path.relpath(path, test_dir), fh.read()))
    return found


def append(path, text):
    # surrogateescape: the bytes of a pgpool.log line go back to the log as they were.
    with open(path, "a", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(text)


def save_pgpool_logs(test_dir, path):
    with open(path, "wb") as fh:
        for _, data in pgpool_logs(test_dir):
            fh.write(data)


def one_test(name, opts, base, suite):
    log_dir = os.path.join(base, "log")
    log = os.path.join(log_dir, name)
    test_dir = os.path.join(suite, "tests", name)

    def attempt(number):
        started = time.monotonic()
        status, _ = step("run", opts.flavor, name, str(opts.deadline),
                         str(rules.snapshot_at(opts.deadline)))
        logs = [(p, d.decode("utf-8", "surrogateescape")) for p, d in pgpool_logs(test_dir)]
        crashes = rules.crash_lines(logs)
        if crashes:
            append(log, "=== pgpool-regress: a pgpool process crashed:\n" + "\n".join(crashes) + "\n")
        return rules.Run(status, bool(crashes), int(time.monotonic() - started))

    def before_again(number, run):
        # Each earlier run's log, its snapshot of a hang and the pgpool.log it left are kept
        # beside the test's own (log/NAME.runN*).
        append(log, "=== pgpool-regress: %s exit %d in %d s; running it again\n"
               % (name, run.status, run.seconds))
        earlier = "%s.run%d" % (log, number)
        os.replace(log, earlier)
        if os.path.isfile(log + ".hang"):
            os.replace(log + ".hang", earlier + ".hang")
        save_pgpool_logs(test_dir, earlier + ".pgpool.log")
        shutil.rmtree(os.path.join(test_dir, "testdir"), ignore_errors=True)

    runs = rules.run_test(attempt, before_again, opts.ci)
    print(rules.result_line(name, runs), flush=True)
    last = runs[-1]
    append(log, "=== pgpool-regress: %s exit %d in %d s\n" % (name, last.status, last.seconds))
    # A failed test's pgpool.log goes with its log: its test directory is removed below.
    if not rules.passed(last):
        save_pgpool_logs(test_dir, log + ".pgpool.log")
    if opts.keep:
        kept = os.path.join(base, "kept", name)
        os.makedirs(os.path.dirname(kept), exist_ok=True)
        shutil.rmtree(kept, ignore_errors=True)
        subprocess.run(["cp", "-a", test_dir, kept], check=True)
    shutil.rmtree(os.path.join(test_dir, "testdir"), ignore_errors=True)
    return rules.verdict(runs)


def main(argv):
    try:
        opts = rules.parse_args(argv)
    except rules.UsageError as e:
        die(str(e))
    if opts.help:
        with open(SCRIPT, encoding="utf-8") as fh:
            sys.stdout.write(rules.help_text(fh.read()))
        return 0

    status, out = step("prepare", opts.flavor, capture=True)
    if status != 0:
        return 2
    base = out.strip().splitlines()[-1]
    suite = os.path.join(base, "source", "src", "test", "regression")
    available = [d for d in os.listdir(os.path.join(suite, "tests"))
                 if os.path.isfile(os.path.join(suite, "tests", d, "test.sh"))]
    try:
        tests = rules.select(opts.tests, available)
    except rules.UsageError as e:
        die(str(e))
    if opts.list:
        sys.stdout.write("".join(t + "\n" for t in tests))
        return 0
    if rules.needs_built_source(tests) and step("build-source", opts.flavor)[0] != 0:
        return 2

    started = time.monotonic()
    verdicts = [one_test(name, opts, base, suite) for name in tests]
    say("%s build, %d tests in %s; logs in %s"
        % (opts.flavor, len(tests), rules.duration(int(time.monotonic() - started)),
           os.path.join(base, "log")))
    line, status = rules.summary(verdicts)
    print(line, flush=True)
    return status


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
