"""The emulator answers 429 to everything for a while: the proxy waits it out, the SDK sees
none."""

import time

from common import ApiException, faults, genesys, sdk, result

routing = genesys.RoutingApi(sdk())
routing.get_routing_queues(page_size=1)
faults({"force_429_ms": 1500})
statuses = []
started = time.monotonic()
for _ in range(5):
    try:
        routing.get_routing_queues(page_size=1)
        statuses.append(200)
    except ApiException as e:
        statuses.append(e.status)
result(statuses=statuses, seconds=round(time.monotonic() - started, 3))
