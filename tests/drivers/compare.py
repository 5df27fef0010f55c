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
import os
import sys

RANK = {"skip": 0, "pass": 1, "fail": 2, "error": 3}
CONFIGS = [("direct", "direct"), ("plain", "pgveil, no policy"), ("masked", "pgveil, policy")]
# run.sh's DRIVERS_CONFIGS: the configurations that ran (direct always).
_RAN = os.environ.get("DRIVERS_CONFIGS", "direct plain masked").split()
CONFIGS = [c for c in CONFIGS if c[0] == "direct" or c[0] in _RAN]


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


def known_entry(known, suite, config, test):
    for entry in known:
        k_suite, k_config, pattern, _ = entry
        if k_suite == suite and k_config in (config, "*") and fnmatch.fnmatchcase(test, pattern):
            return entry
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
    used = set()
    ran = {}
    empty = []
    for suite in suites:
        runs = {key: load(f"{directory}/{suite}-{key}.txt") for key, _ in CONFIGS}
        print(f"{suite:<15}" + "".join(f"| {counts(runs[key]):<{width}}" for key, _ in CONFIGS))
        if not runs["direct"]:
            empty.append(suite)
        ran[suite] = set(runs["direct"])
        for key, label in CONFIGS[1:]:
            for test in sorted(set(runs["direct"]) | set(runs[key])):
                want = runs["direct"].get(test, "missing")
                got = runs[key].get(test, "missing")
                if want != got:
                    line = f"  {suite} [{label}] {test}: direct {want}, through pgveil {got}"
                    entry = known_entry(known, suite, key, test)
                    if entry:
                        used.add(id(entry))
                        understood.append(f"{line}\n      known: {entry[3]}")
                    else:
                        differences.append(line)
    if understood:
        print(f"\n{len(understood)} known difference(s) (tests/drivers/known-differences.txt):")
        print("\n".join(understood))
    # Entries whose tests ran and all ended as direct: fixed (or, for timing
    # entries, lucky this time).
    stale = [
        " ".join(entry[:3])
        for entry in known
        if entry[0] in ran
        and id(entry) not in used
        and not entry[3].startswith("timing")
        and any(fnmatch.fnmatchcase(t, entry[2]) for t in ran[entry[0]])
    ]
    if stale:
        print("\nknown differences that did not occur (remove them if fixed):")
        print("\n".join(f"  {line}" for line in stale))
    if differences:
        print(f"\n{len(differences)} test(s) differ from direct:")
        print("\n".join(differences))
    for suite in empty:
        print(f"\n{suite}: the direct run recorded no test (see its log)")
    return 1 if differences or empty else 0


if __name__ == "__main__":
    sys.exit(main())
