"""Shared by the scenarios: the SDK pointed at the proxy, the emulator's control routes, and
the result line the Rust test reads (the last line of standard output, JSON)."""

import json
import os
import sys
import urllib.request

import urllib3

import PureCloudPlatformClientV2 as genesys
from PureCloudPlatformClientV2.rest import ApiException

PROXY = os.environ["CREDFLOW_PROXY"]
EMULATOR = os.environ["CREDFLOW_EMULATOR"]


def sdk():
    """An SDK client on the proxy, logged in as the SDK does it: the proxy's /oauth/token hands
    out a placeholder; the real token never reaches Python.

    The SDK's urllib3 pool retries a 429 or 503 that carries Retry-After by itself (urllib3's
    `Retry()`, 10 attempts, every method): switched off here, so that each call shows exactly
    what the proxy answered."""
    client = genesys.api_client.ApiClient(host=PROXY)
    pool = client.get_http_client().rest_client.pool_manager
    pool.connection_pool_kw["retries"] = urllib3.util.Retry(0, respect_retry_after_header=False)
    return client.get_client_credentials_token("sdk-client-id", "sdk-client-secret")


def faults(update):
    """POST /__emulator/faults on the emulator (not through the proxy)."""
    request = urllib.request.Request(
        EMULATOR + "/__emulator/faults",
        data=json.dumps(update).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def header(exception, name):
    """A response header of an ApiException, case-insensitively."""
    for key, value in (exception.headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def result(**fields):
    print(json.dumps(fields), flush=True)


__all__ = ["ApiException", "genesys", "sdk", "faults", "header", "result", "sys"]
