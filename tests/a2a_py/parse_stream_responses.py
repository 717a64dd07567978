"""Reads JSON bodies, one a line, from stdin and parses each as the official SDK's
`StreamResponse` (unknown fields refused), as an SDK-based push-notification receiver would.

Prints one JSON line: {"parsed": <count>, "kinds": [the member each body sets]}. Exits
non-zero on a body that does not parse.
"""

import json
import sys

from google.protobuf.json_format import Parse

from a2a.types import StreamResponse

kinds = []
for line in sys.stdin:
    if line.strip():
        item = Parse(line, StreamResponse())
        kinds.append(item.WhichOneof("payload"))
print(json.dumps({"parsed": len(kinds), "kinds": kinds}))
