"""The token endpoint is in maintenance (since before the proxy started): SDK calls fail fast
with 503 and Retry-After; once it ends, the same calls succeed, with the SDK doing nothing but
waiting as Retry-After says."""

import json
import time

from common import ApiException, faults, genesys, header, sdk, result

routing = genesys.RoutingApi(sdk())
started = time.monotonic()
try:
    routing.get_routing_queues(page_size=1)
    first = {"status": 200}
except ApiException as e:
    body = json.loads(e.body)
    first = {
        "status": e.status,
        "retry_after": header(e, "Retry-After"),
        "code": body.get("code"),
        "seconds": round(time.monotonic() - started, 3),
    }
faults({"end_maintenance": True})
attempts = 0
status = None
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    attempts += 1
    try:
        routing.get_routing_queues(page_size=1)
        status = 200
        break
    except ApiException as e:
        status = e.status
        time.sleep(float(header(e, "Retry-After") or 1))
result(first=first, recovered=status, attempts=attempts)
