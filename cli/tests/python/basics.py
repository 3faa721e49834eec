"""Token flow, get_routing_queues with paging (and its name filter), a queue by id, users,
organizations/me, and TokensApi HEAD /tokens/me: the SDK's own models parse every answer."""

from common import genesys, sdk, result

client = sdk()
routing = genesys.RoutingApi(client)

names = []
previous = []
page = 1
while True:
    listing = routing.get_routing_queues(page_size=2, page_number=page)
    names += [q.name for q in listing.entities]
    previous.append(listing.previous_uri)
    if page >= listing.page_count:
        break
    page += 1

one = routing.get_routing_queue(listing.entities[0].id)
filtered = routing.get_routing_queues(name="Emulated queue 2")
users = genesys.UsersApi(client).get_users(page_size=5, page_number=2)
org = genesys.OrganizationApi(client).get_organizations_me()
genesys.TokensApi(client).head_tokens_me()
me = genesys.TokensApi(client).get_tokens_me()

result(
    queues=names,
    pages=page,
    previous_uris=previous,
    queue_by_id=one.name,
    filtered=[q.name for q in filtered.entities],
    users=[u.name for u in users.entities],
    organization=org.name,
    token_client=me.o_auth_client.id if me.o_auth_client else None,
)
