"""Unit tests of etc/regress/rules.py (etc/pgpool-regress's rules): `python3 etc/regress/test_rules.py`,
run by etc/test. No files, no processes: milliseconds."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rules  # noqa: E402
from rules import Run, UsageError  # noqa: E402

SUITE = ["001.load_balance", "003.failover", "009.sql_comments", "010.rewrite_timestamp",
         "018.detach_primary", "037.failover_session", "100.bug_fixes", "1000.imaginary"]


class Options(unittest.TestCase):
    def test_defaults(self):
        o = rules.parse_args([])
        self.assertEqual(o, rules.Options("ours", 300, False, False, False, [], False))

    def test_every_option(self):
        o = rules.parse_args(["--stock", "--keep", "--list", "--timeout", "60", "001", "3"])
        self.assertEqual(o, rules.Options("stock", 60, True, True, False, ["001", "3"], False))
        o = rules.parse_args(["--asan", "--keep"])
        self.assertEqual(o, rules.Options("asan", rules.DEFAULT_DEADLINE, True, False, False, [], False))
        self.assertEqual(rules.parse_args(["--timeout=7"]).deadline, 7)

    def test_ci_appends_the_subset_after_the_named_tests(self):
        o = rules.parse_args(["--ci", "126"])
        self.assertTrue(o.ci)
        self.assertEqual(o.tests, ["126"] + list(rules.CI_TESTS))

    def test_the_ci_subset(self):
        self.assertEqual(len(rules.CI_TESTS), 10)
        self.assertEqual(rules.CI_TESTS[0], "001.load_balance")
        self.assertIn("119.memory_leak_extended", rules.CI_TESTS)
        self.assertEqual(len(set(rules.CI_TESTS)), 10)

    def test_help_stops_the_parsing_but_not_before_an_error(self):
        self.assertTrue(rules.parse_args(["001", "--help", "--bogus"]).help)
        self.assertTrue(rules.parse_args(["-h"]).help)
        with self.assertRaisesRegex(UsageError, r"^unknown option --bogus \(see --help\)$"):
            rules.parse_args(["--bogus", "--help"])

    def test_a_deadline_is_a_whole_number_above_zero(self):
        for bad in (["--timeout"], ["--timeout", "0"], ["--timeout", "1.5"], ["--timeout=-3"],
                    ["--timeout="], ["--timeout", "ten"]):
            with self.assertRaises(UsageError, msg=bad):
                rules.parse_args(bad)

    def test_a_lone_dash_is_an_option(self):
        with self.assertRaisesRegex(UsageError, "unknown option -x"):
            rules.parse_args(["-x"])


class Selection(unittest.TestCase):
    def test_none_named_is_the_whole_suite_in_order(self):
        self.assertEqual(rules.select([], list(reversed(SUITE))), SUITE)

    def test_a_unique_part(self):
        self.assertEqual(rules.select(["009", "detach"], SUITE),
                         ["009.sql_comments", "018.detach_primary"])

    def test_the_order_asked_is_kept_and_repeats_run_again(self):
        self.assertEqual(rules.select(["037", "001", "037.failover_session"], SUITE),
                         ["037.failover_session", "001.load_balance", "037.failover_session"])

    def test_an_exact_name_wins_over_the_names_it_is_part_of(self):
        suite = ["100.bug", "100.bug_fixes"]
        self.assertEqual(rules.select(["100.bug"], suite), ["100.bug"])

    def test_an_ambiguous_part_is_an_error_naming_the_candidates(self):
        with self.assertRaisesRegex(UsageError, r"^'fail' names 2 tests: 003.failover 037.failover_session$"):
            rules.select(["fail"], SUITE)
        # "100" is a part of 100.bug_fixes and of 1000.imaginary.
        with self.assertRaisesRegex(UsageError, "'100' names 2 tests"):
            rules.select(["100"], SUITE)

    def test_an_unknown_part_is_an_error(self):
        with self.assertRaisesRegex(UsageError, r"^'999' names 0 tests$"):
            rules.select(["001", "999"], SUITE)

    def test_the_source_tree_is_built_only_for_010(self):
        self.assertTrue(rules.needs_built_source(["001.load_balance", "010.rewrite_timestamp"]))
        self.assertFalse(rules.needs_built_source(["001.load_balance", "100.bug_fixes"]))


class Deadline(unittest.TestCase):
    def test_the_snapshot_comes_5_s_before_the_deadline(self):
        self.assertEqual(rules.snapshot_at(300), 295)
        self.assertEqual(rules.snapshot_at(11), 6)

    def test_a_short_deadline_snapshots_half_way(self):
        self.assertEqual(rules.snapshot_at(10), 5)
        self.assertEqual(rules.snapshot_at(5), 2)
        self.assertEqual(rules.snapshot_at(1), 0)

    def test_the_default_is_regress_sh_s(self):
        self.assertEqual(rules.DEFAULT_DEADLINE, 300)


class Crashes(unittest.TestCase):
    def crash(self, text):
        return rules.crash_lines([("testdir/log/pgpool.log", text)])

    def test_each_marker_is_a_crash(self):
        for line in ("LOG:  child process with pid: 42 exits with status 139 by signal 11",
                     "LOG:  child process with pid: 42 was terminated by signal 6",
                     "WARNING:  child process with pid: 42 was terminated by signal 6: Aborted",
                     "LOG:  worker process received Segmentation fault",
                     "SIGNAL 11 in upper case",
                     "==42==ERROR: AddressSanitizer: heap-use-after-free on address 0x1"):
            self.assertEqual(self.crash("start\n%s\nend\n" % line),
                             ["testdir/log/pgpool.log: %s" % line], line)

    def test_a_log_with_none_is_not_a_crash(self):
        self.assertEqual(self.crash("LOG:  pgpool-II successfully started\n"
                                    "LOG:  child process with pid: 42 exits with status 256\n"
                                    "LOG:  received smart shutdown request\n"), [])
        self.assertEqual(self.crash(""), [])
        self.assertEqual(rules.crash_lines([]), [])

    def test_signal_6_is_not_signal_60_or_64(self):
        self.assertEqual(self.crash("terminated by signal 64\nsignal 60 here\n"), [])
        self.assertEqual(len(self.crash("signal 6\nsignal 6.\n")), 2)

    def test_the_word_segfault_is_not_a_crash(self):
        # A test's own name: 124.bug700_memqcache_segfault.
        self.assertEqual(self.crash("LOG:  loading /tmp/124.bug700_memqcache_segfault/pgpool.conf\n"), [])

    def test_every_log_and_every_crash_line_is_reported(self):
        found = rules.crash_lines([("a/pgpool.log", "ok\nsignal 11\n"),
                                   ("b/pgpool.log.1", "fine\n"),
                                   ("c/pgpool.log", "signal 6\nsegmentation fault\n")])
        self.assertEqual(found, ["a/pgpool.log: signal 11", "c/pgpool.log: signal 6",
                                 "c/pgpool.log: segmentation fault"])


def script(*runs):
    """A test that runs as given, and what the loop did: (runs returned, runs made, set aside)."""
    made, aside = [], []

    def attempt(n):
        made.append(n)
        return runs[n - 1]

    def before_again(n, run):
        # Called between run n and run n + 1, never later.
        aside.append((n, run, made[-1] == n))

    return attempt, before_again, made, aside


OK = Run(0, False, 10)
FAIL = Run(1, False, 10)
CRASH = Run(1, True, 10)
CRASH_BUT_OK = Run(0, True, 10)
TIMEOUT = Run(124, False, 300)
KILLED = Run(137, False, 310)


class Retry(unittest.TestCase):
    def run_(self, ci, *runs):
        attempt, before_again, made, aside = script(*runs)
        result = rules.run_test(attempt, before_again, ci)
        return result, made, aside

    def test_a_pass_runs_once(self):
        self.assertEqual(self.run_(True, OK, OK, OK), ([OK], [1], []))

    def test_failed_then_passed_passes(self):
        result, made, aside = self.run_(True, FAIL, OK)
        self.assertEqual(made, [1, 2])
        self.assertEqual(aside, [(1, FAIL, True)])
        self.assertEqual(rules.verdict(result), "ok")
        self.assertEqual(rules.result_line("119.x", result),
                         "ok 119.x (on run 2; the earlier: log/119.x.run*)")

    def test_three_runs_at_most_and_the_last_decides(self):
        result, made, aside = self.run_(True, FAIL, FAIL, FAIL, OK)
        self.assertEqual(made, [1, 2, 3])
        self.assertEqual([n for n, _, _ in aside], [1, 2])
        self.assertEqual(rules.verdict(result), "failed")
        self.assertEqual(rules.result_line("027.x", result),
                         "failed 027.x (on run 3; the earlier: log/027.x.run*)")

    def test_failed_twice_then_passed_passes(self):
        result, made, _ = self.run_(True, FAIL, TIMEOUT, OK)
        self.assertEqual(made, [1, 2, 3])
        self.assertEqual(rules.verdict(result), "ok")

    def test_passed_then_failed_fails(self):
        # A second run only follows a failure; the run that counts is the last one made.
        self.assertEqual(rules.verdict([OK, FAIL]), "failed")
        self.assertEqual(rules.verdict([FAIL, OK, TIMEOUT]), "timeout")

    def test_a_crash_is_never_run_again(self):
        for crash in (CRASH, CRASH_BUT_OK, Run(124, True, 300)):
            result, made, aside = self.run_(True, crash, OK, OK)
            self.assertEqual((made, aside), ([1], []), crash)
            self.assertNotEqual(rules.verdict(result), "ok", crash)

    def test_a_crash_in_a_later_run_ends_it(self):
        result, made, _ = self.run_(True, FAIL, CRASH, OK)
        self.assertEqual(made, [1, 2])
        self.assertEqual(rules.verdict(result), "failed")

    def test_a_timeout_is_run_again(self):
        result, made, _ = self.run_(True, TIMEOUT, KILLED, TIMEOUT)
        self.assertEqual(made, [1, 2, 3])
        self.assertEqual(rules.verdict(result), "timeout")

    def test_the_full_suite_never_retries(self):
        for first in (FAIL, TIMEOUT, CRASH):
            result, made, aside = self.run_(False, first, OK)
            self.assertEqual((result, made, aside), ([first], [1], []), first)

    def test_runs_again_rule(self):
        self.assertTrue(rules.runs_again(FAIL, 1, True))
        self.assertTrue(rules.runs_again(FAIL, 2, True))
        self.assertFalse(rules.runs_again(FAIL, 3, True))
        self.assertFalse(rules.runs_again(OK, 1, True))
        self.assertFalse(rules.runs_again(CRASH, 1, True))
        self.assertFalse(rules.runs_again(FAIL, 1, False))


class Verdict(unittest.TestCase):
    def test_each_verdict(self):
        self.assertEqual(rules.result_line("001.load_balance", [OK]), "ok 001.load_balance")
        self.assertEqual(rules.result_line("001.load_balance", [FAIL]), "failed 001.load_balance")
        self.assertEqual(rules.result_line("001.load_balance", [TIMEOUT]), "timeout 001.load_balance")
        self.assertEqual(rules.result_line("001.load_balance", [KILLED]), "timeout 001.load_balance")

    def test_a_crash_fails_a_test_that_test_sh_passed(self):
        self.assertEqual(rules.verdict([CRASH_BUT_OK]), "failed")
        self.assertFalse(rules.passed(CRASH_BUT_OK))

    def test_a_crash_under_the_deadline_is_a_timeout(self):
        self.assertEqual(rules.verdict([Run(124, True, 300)]), "timeout")

    def test_other_statuses_fail(self):
        for status in (1, 2, 125, 126, 127, 139):
            self.assertEqual(rules.verdict([Run(status, False, 1)]), "failed", status)


class Summary(unittest.TestCase):
    def test_all_passed_exits_0(self):
        self.assertEqual(rules.summary(["ok", "ok"]), ("2 passed, 0 failed", 0))

    def test_timeouts_count_as_failed_and_exit_1(self):
        self.assertEqual(rules.summary(["ok", "timeout", "failed"]), ("1 passed, 2 failed", 1))
        self.assertEqual(rules.summary(["timeout"]), ("0 passed, 1 failed", 1))

    def test_nothing_run(self):
        self.assertEqual(rules.summary([]), ("0 passed, 0 failed", 0))

    def test_duration(self):
        self.assertEqual(rules.duration(0), "0 min 0 s")
        self.assertEqual(rules.duration(517), "8 min 37 s")


class Help(unittest.TestCase):
    def test_the_header_up_to_set_e(self):
        text = "#!/usr/bin/env bash\n# usage: x\n#   --a  b\n#\n#no space\nset -euo pipefail\n# after\n"
        self.assertEqual(rules.help_text(text), "usage: x\n  --a  b\n\nno space\n")


if __name__ == "__main__":
    unittest.main()
