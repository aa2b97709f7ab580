"""Tests of etc/regress/run.py, the driver, against a stand-in for etc/pgpool-regress's steps
(no root, no namespaces, no pgpool): the lines it prints, its exit status, and the logs it keeps
on a retry, a crash and a deadline. Run by etc/test with test_rules.py."""

import contextlib
import io
import json
import os
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rules  # noqa: E402
import run  # noqa: E402

# The steps, played from plan.json: for each test, one [status, pgpool.log text] per run.
FAKE_STEPS = "#!%s\n" % sys.executable + textwrap.dedent("""\
    import json, os, sys
    here = os.path.dirname(os.path.abspath(__file__))
    base = os.path.join(here, "base")
    tests = os.path.join(base, "source", "src", "test", "regression", "tests")
    plan = json.load(open(os.path.join(here, "plan.json")))
    _, _, step, flavor, *args = sys.argv  # the script, --step, ...
    with open(os.path.join(here, "calls"), "a") as f:
        f.write(" ".join([step, flavor] + args) + "\\n")
    if step == "prepare":
        for name in plan:
            os.makedirs(os.path.join(tests, name), exist_ok=True)
            open(os.path.join(tests, name, "test.sh"), "w").close()
        os.makedirs(os.path.join(base, "log"), exist_ok=True)
        print(base)
        sys.exit(0)
    name = args[0]
    runs = plan[name]
    counter = os.path.join(here, name + ".runs")
    n = int(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "w").write(str(n + 1))
    status, pgpool_log = runs[n]
    testdir = os.path.join(tests, name, "testdir", "log")
    os.makedirs(testdir, exist_ok=True)
    open(os.path.join(testdir, "pgpool.log"), "w").write(pgpool_log)
    open(os.path.join(base, "log", name), "w").write("test.sh run %d\\n" % (n + 1))
    if status == 124:
        open(os.path.join(base, "log", name + ".hang"), "w").write("hang %d\\n" % (n + 1))
    sys.exit(status)
""")


class Driver(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.log = os.path.join(self.dir, "base", "log")
        fake = os.path.join(self.dir, "steps")
        with open(fake, "w") as f:
            f.write(FAKE_STEPS)
        os.chmod(fake, 0o755)
        real = run.SCRIPT
        run.SCRIPT = fake
        self.addCleanup(setattr, run, "SCRIPT", real)

    def drive(self, plan, argv):
        with open(os.path.join(self.dir, "plan.json"), "w") as f:
            json.dump(plan, f)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = run.main(argv)
            except SystemExit as e:
                status = e.code
        return status, out.getvalue(), err.getvalue()

    def read(self, name):
        with open(os.path.join(self.log, name), encoding="utf-8") as f:
            return f.read()

    def calls(self):
        with open(os.path.join(self.dir, "calls")) as f:
            return f.read().splitlines()

    def test_the_lines_the_steps_and_the_exit_status(self):
        status, out, err = self.drive({"119.x": [[124, "fine\n"], [1, ""]], "001.y": [[0, ""]]},
                                      ["119", "001", "--timeout", "20", "--stock"])
        self.assertEqual(out, "timeout 119.x\nok 001.y\n1 passed, 1 failed\n")
        self.assertEqual(status, 1)
        self.assertEqual(self.calls(), ["prepare stock", "run stock 119.x 20 15",
                                        "run stock 001.y 20 15"])
        self.assertIn("-----> pgpool-regress: stock build, 2 tests in 0 min 0 s; logs in ", err)

    def test_ci_runs_a_failure_again_and_sets_the_earlier_runs_aside(self):
        plan = {t: [[0, ""]] for t in rules.CI_TESTS}
        t = "119.memory_leak_extended"
        plan[t] = [[124, "fine\n"], [1, "still fine\n"], [0, ""]]
        status, out, _ = self.drive(plan, ["--ci", "--timeout", "20"])
        lines = out.splitlines()
        self.assertEqual(lines[0], "ok 001.load_balance")
        self.assertEqual(lines[7], "ok %s (on run 3; the earlier: log/%s.run*)" % (t, t))
        self.assertEqual(lines[-1], "10 passed, 0 failed")
        self.assertEqual(status, 0)
        self.assertEqual(self.calls().count("run ours %s 20 15" % t), 3)
        self.assertEqual(self.read(t + ".run1"),
                         "test.sh run 1\n=== pgpool-regress: %s exit 124 in 0 s; running it again\n" % t)
        self.assertEqual(self.read(t + ".run1.hang"), "hang 1\n")
        self.assertEqual(self.read(t + ".run1.pgpool.log"), "fine\n")
        self.assertEqual(self.read(t + ".run2"),
                         "test.sh run 2\n=== pgpool-regress: %s exit 1 in 0 s; running it again\n" % t)
        self.assertEqual(self.read(t + ".run2.pgpool.log"), "still fine\n")
        self.assertFalse(os.path.exists(os.path.join(self.log, t + ".run2.hang")))
        self.assertEqual(self.read(t), "test.sh run 3\n=== pgpool-regress: %s exit 0 in 0 s\n" % t)
        # A passed test's pgpool.log is not kept, and its testdir is removed.
        self.assertFalse(os.path.exists(os.path.join(self.log, t + ".pgpool.log")))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "base", "source", "src", "test",
                                                     "regression", "tests", t, "testdir")))

    def test_a_crash_fails_the_test_at_once_and_is_written_to_its_log(self):
        plan = {"124.z": [[0, "LOG: started\nLOG: child pid 7 was terminated by signal 11\n"],
                          [0, ""]]}
        status, out, _ = self.drive(plan, ["124"])
        self.assertEqual((status, out), (1, "failed 124.z\n0 passed, 1 failed\n"))
        self.assertEqual(self.read("124.z"),
                         "test.sh run 1\n"
                         "=== pgpool-regress: a pgpool process crashed:\n"
                         "testdir/log/pgpool.log: LOG: child pid 7 was terminated by signal 11\n"
                         "=== pgpool-regress: 124.z exit 0 in 0 s\n")
        self.assertEqual(self.read("124.z.pgpool.log"),
                         "LOG: started\nLOG: child pid 7 was terminated by signal 11\n")
        self.assertEqual(self.calls().count("run ours 124.z 300 295"), 1)

    def test_a_timeout_without_ci_runs_once(self):
        status, out, _ = self.drive({"027.w": [[124, "x\n"], [0, ""]]}, ["--timeout=8", "027"])
        self.assertEqual((status, out), (1, "timeout 027.w\n0 passed, 1 failed\n"))
        self.assertEqual(self.calls()[-1], "run ours 027.w 8 4")
        self.assertEqual(self.read("027.w.hang"), "hang 1\n")
        self.assertEqual(self.read("027.w.pgpool.log"), "x\n")

    def test_list_and_usage_errors(self):
        plan = {"001.y": [], "002.y": []}
        self.assertEqual(self.drive(plan, ["--list"])[:2], (0, "001.y\n002.y\n"))
        status, out, err = self.drive(plan, ["y"])
        self.assertEqual((status, out), (2, ""))
        self.assertIn(" !     pgpool-regress: 'y' names 2 tests: 001.y 002.y\n", err)
        status, _, err = self.drive(plan, ["--nope"])
        self.assertEqual(status, 2)
        self.assertEqual(err, " !     pgpool-regress: unknown option --nope (see --help)\n")


if __name__ == "__main__":
    unittest.main()
