"""Compares two agents' verdicts in Autobahn|Testsuite reports (index.json).

    python3 compare.py LABEL DIRECT_INDEX DIRECT_AGENT PROXIED_INDEX PROXIED_AGENT [TIMING]

TIMING is a comma-separated list of cases whose verdict flips between OK and
NON-STRICT from one direct run to the next (the server's own timing: whether it
echoes a message before failing on the bad frame that follows it in the same read).
A flip between those two verdicts on such a case is listed as "timing" and does not
count as a difference; any other verdict change on it still does.

Prints every case whose verdict (behavior, or the closing-handshake verdict
behaviorClose) differs, then a count per verdict for each side. Exit status: 0 when
every case matches, 1 when any differs, 2 when a side ran no cases or a case is
missing from one side.
"""

import json
import re
import sys
from collections import Counter


def case_key(case_id):
    return [int(p) if p.isdigit() else p for p in re.split(r"[.]", case_id)]


def load(path, agent):
    with open(path) as f:
        index = json.load(f)
    if agent not in index:
        return None, sorted(index)
    return index[agent], None


def main():
    label, dpath, dagent, ppath, pagent = sys.argv[1:6]
    timing = set(filter(None, sys.argv[6].split(","))) if len(sys.argv) > 6 else set()
    timing_verdicts = {"OK", "NON-STRICT"}
    direct, dagents = load(dpath, dagent)
    proxied, pagents = load(ppath, pagent)
    status = 0
    if direct is None or proxied is None:
        print("%s: agent missing from the report (direct agents %s, proxied agents %s)"
              % (label, dagents, pagents))
        return 2
    if not direct or not proxied:
        print("%s: a run ran zero cases (direct %d, proxied %d)" % (label, len(direct), len(proxied)))
        return 2

    cases = sorted(set(direct) | set(proxied), key=case_key)
    diffs = []
    for case in cases:
        d, p = direct.get(case), proxied.get(case)
        if d is None or p is None:
            diffs.append((case, d and d["behavior"] or "(missing)", p and p["behavior"] or "(missing)", ""))
            status = 2
            continue
        if d["behavior"] != p["behavior"] or d["behaviorClose"] != p["behaviorClose"]:
            tolerated = (case in timing and d["behaviorClose"] == p["behaviorClose"]
                         and {d["behavior"], p["behavior"]} <= timing_verdicts)
            diffs.append((case, "%s/%s" % (d["behavior"], d["behaviorClose"]),
                          "%s/%s" % (p["behavior"], p["behaviorClose"]),
                          "timing (flips direct vs direct too): tolerated" if tolerated else
                          "close code %s vs %s" % (d.get("remoteCloseCode"), p.get("remoteCloseCode"))))
            if not tolerated:
                status = max(status, 1)

    print("== %s: %d cases" % (label, len(cases)))
    if diffs:
        print("   %-10s %-26s %-26s %s" % ("case", "direct", "proxied", "(behavior/behaviorClose)"))
        for case, d, p, note in diffs:
            print("   %-10s %-26s %-26s %s" % (case, d, p, note))
    else:
        print("   every verdict identical (behavior and behaviorClose)")

    dcount = Counter(v["behavior"] for v in direct.values())
    pcount = Counter(v["behavior"] for v in proxied.values())
    for verdict in sorted(set(dcount) | set(pcount)):
        print("   %-16s direct %4d   proxied %4d" % (verdict, dcount[verdict], pcount[verdict]))
    return status


if __name__ == "__main__":
    sys.exit(main())
