#!/usr/bin/env bash
# Prints a TCP port on 127.0.0.1 that is free right now (the OS picks it).
set -euo pipefail
node -e '
const s = require("net").createServer();
s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
'
