"""pytest plugin (-p record_pytest): appends one line per finished test,
"ID<TAB>OUTCOME" (pass, fail, error, skip), to the file named by
$DRIVERS_RESULTS as it goes, so a run cut short by a timeout still leaves
what it did."""
import os


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        if report.skipped:
            outcome = "skip"
        elif report.failed:
            outcome = "fail" if report.when == "call" else "error"
        elif report.when == "call":
            outcome = "pass"
        else:
            return
        with open(os.environ["DRIVERS_RESULTS"], "a") as out:
            out.write(f"{report.nodeid}\t{outcome}\n")
