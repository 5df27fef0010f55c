"""Runs unittest test names (argv[2:]) and appends one line per finished
test, "ID<TAB>OUTCOME" (pass, fail, error, skip), to the file argv[1] as it
goes, so a run cut short by a timeout still leaves what it did."""
import os
import sys
import unittest


class Recorder(unittest.TextTestResult):
    def _record(self, test, outcome):
        with open(sys.argv[1], "a") as out:
            out.write(f"{test.id()}\t{outcome}\n")

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "fail")

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skip")

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "pass")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "fail")


# Test modules are imported from the directory the suite runs in.
sys.path.insert(0, os.getcwd())
suite = unittest.defaultTestLoader.loadTestsFromNames(sys.argv[2:])
unittest.TextTestRunner(verbosity=2, resultclass=Recorder).run(suite)
