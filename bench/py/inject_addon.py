"""mitmproxy addon for `cargo xtask bench`: inject the benchmark's key.

The same header Airlock injects, set on every request mitmproxy forwards, so
the peers do the same work: terminate TLS, add a header, forward.
"""

import os

AUTHORIZATION = os.environ["BENCH_AUTHORIZATION"]


def request(flow):
    flow.request.headers["Authorization"] = AUTHORIZATION
