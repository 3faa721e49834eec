"""The emulator revokes every token between two calls: the SDK never sees the 401."""

from common import ApiException, faults, genesys, sdk, result

routing = genesys.RoutingApi(sdk())
statuses = []
for i in range(6):
    if i == 3:
        faults({"revoke_all_tokens": True})
    try:
        routing.get_routing_queues(page_size=1)
        statuses.append(200)
    except ApiException as e:
        statuses.append(e.status)
result(statuses=statuses)
