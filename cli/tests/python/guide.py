"""The guide's scenario: 4 worker processes x 8 threads, together wanting 3x the rate limit,
through one proxy. Each thread counts what its SDK calls return."""

import json
import multiprocessing
import os
import threading
import time

PROCESSES = 4
THREADS = 8


def worker(limit, window, seconds, ready, results):
    # Imported here: each process logs in with its own SDK client.
    from common import ApiException, genesys, sdk

    routing = genesys.RoutingApi(sdk())
    # Importing the SDK takes seconds: the demand starts when every process is ready.
    ready.wait()
    # Each of the 32 threads sends one request per `interval`: 3x the limit together.
    interval = window * PROCESSES * THREADS / (3.0 * limit)
    counts = {"ok": 0, "429": 0, "other": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run():
        next_at = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= stop:
                return
            if next_at > now:
                time.sleep(next_at - now)
            next_at += interval
            try:
                routing.get_routing_queues(page_size=1)
                key = "ok"
            except ApiException as e:
                key = "429" if e.status == 429 else "other"
            with lock:
                counts[key] += 1

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(counts)


if __name__ == "__main__":
    limit = int(os.environ["GUIDE_LIMIT"])
    window = float(os.environ["GUIDE_WINDOW"])
    seconds = float(os.environ["GUIDE_SECONDS"])
    ready = multiprocessing.Barrier(PROCESSES)
    results = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=worker, args=(limit, window, seconds, ready, results))
        for _ in range(PROCESSES)
    ]
    for p in processes:
        p.start()
    per_process = [results.get(timeout=120) for _ in processes]
    for p in processes:
        p.join()
    total = {k: sum(c[k] for c in per_process) for k in ("ok", "429", "other")}
    print(json.dumps(total), flush=True)
