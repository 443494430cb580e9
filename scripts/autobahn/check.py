# Checks an Autobahn|Testsuite report: prints the behaviors per section and
# every case that is not OK, and exits 1 unless every case (and its close)
# is OK or INFORMATIONAL and at least one case ran.
#   PREFIX/bin/python scripts/autobahn/check.py OUTDIR AGENT
import json, sys
from collections import OrderedDict

outdir, agent = sys.argv[1], sys.argv[2]
try:
    idx = json.load(open(outdir + "/index.json"))[agent]
except (IOError, KeyError, ValueError) as e:
    print("autobahn: no report for %s in %s: %r" % (agent, outdir, e))
    sys.exit(1)

key = lambda c: [int(x) for x in c.split('.')]
kinds = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
passing = ("OK", "INFORMATIONAL")
by = OrderedDict()
for case in sorted(idx, key=key):
    section = case.split('.')[0]
    by.setdefault(section, dict((k, 0) for k in kinds))
    by[section][idx[case]["behavior"]] = by[section].get(idx[case]["behavior"], 0) + 1
print("%-8s" % "section" + "".join("%15s" % k for k in kinds))
total = dict((k, 0) for k in kinds)
for section, counts in by.items():
    print("%-8s" % section + "".join("%15d" % counts.get(k, 0) for k in kinds))
    for k in kinds:
        total[k] += counts.get(k, 0)
print("%-8s" % "total" + "".join("%15d" % total[k] for k in kinds))

bad = [c for c in sorted(idx, key=key)
       if idx[c]["behavior"] not in passing or idx[c].get("behaviorClose") not in passing]
for case in bad:
    e = idx[case]
    print("  %-8s %-14s close=%-14s %s" % (case, e["behavior"], e.get("behaviorClose"), e.get("reportfile")))
if not idx:
    print("autobahn: %s: no case ran" % agent)
    sys.exit(1)
if bad:
    print("autobahn: %s: %d of %d cases not OK (details: python scripts/autobahn/details.py %s %s)"
          % (agent, len(bad), len(idx), outdir, agent))
    sys.exit(1)
print("autobahn: %s: all %d cases OK or INFORMATIONAL" % (agent, len(idx)))
