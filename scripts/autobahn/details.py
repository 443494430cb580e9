# Prints, for each case of an Autobahn outdir whose behavior is not OK (or all
# with -a), what it expected, what it received and how it closed:
#   PREFIX/bin/python scripts/autobahn/details.py OUTDIR AGENT [-a]
import json, sys
outdir, agent = sys.argv[1], sys.argv[2]
allc = len(sys.argv) > 3
idx = json.load(open(outdir + "/index.json"))[agent]
key = lambda c: [int(x) for x in c.split('.')]
for c in sorted(idx, key=key):
    if not allc and idx[c]["behavior"] == "OK":
        continue
    d = json.load(open(outdir + "/" + idx[c]["reportfile"]))
    print "%s  behavior=%s behaviorClose=%s remoteCloseCode=%s duration=%sms" % (c, d["behavior"], d["behaviorClose"], d.get("remoteCloseCode"), d.get("duration"))
    print "   description: %s" % d.get("description").replace("\n", " ")
    print "   expectation: %s" % d.get("expectation").replace("\n", " ")
    print "   result: %s" % d.get("result")
    print "   resultClose: %s" % d.get("resultClose")
    print "   expected: %s" % json.dumps(d.get("expected"))[:300]
    print "   received: %s" % json.dumps(d.get("received"))[:300]
    print "   closeCode=%s reason=%r wasClean=%s droppedByMe=%s failedByMe=%s wasNotCleanReason=%s" % (d.get("remoteCloseCode"), d.get("remoteCloseReason"), d.get("wasClean"), d.get("droppedByMe"), d.get("failedByMe"), d.get("wasNotCleanReason"))
