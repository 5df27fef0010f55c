"""Compares the per-test results of tests/drivers/run.sh.

    compare.py DIR KNOWN SUITE...

DIR holds SUITE-direct.txt, SUITE-plain.txt and SUITE-masked.txt, lines
"ID<TAB>OUTCOME". Prints passed/failed/errors/skipped per suite and
configuration, then every test whose outcome through pgveil differs from its
outcome direct (a test missing from a run, after a hang or crash, counts as
"missing"). KNOWN lists differences that are understood (see the file):
they are printed with their reason but do not fail. Exit status 1 if any
other test differs, or if a direct run recorded no test at all."""
import fnmatch
import sys

RANK = {"skip": 0, "pass": 1, "fail": 2, "error": 3}
CONFIGS = [("direct", "direct"), ("plain", "pgveil, no policy"), ("masked", "pgveil, policy")]


def load(path):
    results = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                test, _, outcome = line.rstrip("\n").rpartition("\t")
                if outcome in RANK and test:
                    # A test recorded twice (pytest: a call that passed and a
                    # teardown that failed) keeps its worst outcome.
                    if RANK[outcome] >= RANK.get(results.get(test), -1):
                        results[test] = outcome
    except FileNotFoundError:
        pass
    return results


def load_known(path):
    """Lines "SUITE CONFIG TEST-PATTERN REASON…" (CONFIG plain, masked or *;
    TEST-PATTERN an fnmatch pattern); lines starting with # are comments."""
    known = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 3)
            if len(parts) < 4:
                sys.exit(f"{path}: want SUITE CONFIG TEST REASON: {line}")
            known.append(parts)
    return known


def known_reason(known, suite, config, test):
    for k_suite, k_config, pattern, reason in known:
        if k_suite == suite and k_config in (config, "*") and fnmatch.fnmatchcase(test, pattern):
            return reason
    return None


def counts(results):
    c = {k: 0 for k in RANK}
    for outcome in results.values():
        c[outcome] += 1
    return f"{c['pass']} passed / {c['fail']} failed / {c['error']} errors / {c['skip']} skipped"


def main():
    directory, known, suites = sys.argv[1], load_known(sys.argv[2]), sys.argv[3:]
    width = 48
    print(f"{'suite':<15}" + "".join(f"| {label:<{width}}" for _, label in CONFIGS))
    differences = []
    understood = []
    empty = []
    for suite in suites:
        runs = {key: load(f"{directory}/{suite}-{key}.txt") for key, _ in CONFIGS}
        print(f"{suite:<15}" + "".join(f"| {counts(runs[key]):<{width}}" for key, _ in CONFIGS))
        if not runs["direct"]:
            empty.append(suite)
        for key, label in CONFIGS[1:]:
            for test in sorted(set(runs["direct"]) | set(runs[key])):
                want = runs["direct"].get(test, "missing")
                got = runs[key].get(test, "missing")
                if want != got:
                    line = f"  {suite} [{label}] {test}: direct {want}, through pgveil {got}"
                    reason = known_reason(known, suite, key, test)
                    if reason:
                        understood.append(f"{line}\n      known: {reason}")
                    else:
                        differences.append(line)
    if understood:
        print(f"\n{len(understood)} known difference(s) (tests/drivers/known-differences.txt):")
        print("\n".join(understood))
    if differences:
        print(f"\n{len(differences)} test(s) differ from direct:")
        print("\n".join(differences))
    for suite in empty:
        print(f"\n{suite}: the direct run recorded no test (see its log)")
    return 1 if differences or empty else 0


if __name__ == "__main__":
    sys.exit(main())
