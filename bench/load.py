"""Load on `naics-trainer serve` over loopback: p50 / p99 latency and requests/s for single-query
search at each concurrency, then 100-text classify batches; the server's RSS before and after.
Bounded in count and in time. Usage: load.py BASE_URL SERVER_PID QUERIES_FILE."""
import http.client, json, statistics, sys, threading, time, urllib.parse

base, pid, queries_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host = urllib.parse.urlparse(base).netloc
queries = [l.strip() for l in open(queries_file) if l.strip()]


def rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


def run(clients, requests, make, limit_s=120):
    """`requests` in all from `clients` threads, each on one keep-alive connection."""
    latencies, errors, lock = [], [0], threading.Lock()
    counter = iter(range(requests))
    deadline = time.time() + limit_s

    def client():
        conn = http.client.HTTPConnection(host, timeout=60)
        while time.time() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            method, path, body = make(i)
            t = time.perf_counter()
            conn.request(method, path, body=body, headers={"content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - t
            with lock:
                latencies.append(elapsed)
                if response.status != 200:
                    errors[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    return len(latencies), q[49] * 1000, q[98] * 1000, len(latencies) / wall, errors[0]


def search(i):
    return "GET", "/v1/search?q=" + urllib.parse.quote(queries[i % len(queries)]), None


def classify(i):
    texts = [queries[(i * 100 + j) % len(queries)] for j in range(100)]
    return "POST", "/v1/classify", json.dumps({"texts": texts})


run(1, 20, search)  # warm-up
before = rss_mib()
print(f"{'load':<32} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}")
total = 0
for clients, requests in [(1, 500), (8, 2000), (32, 4000)]:
    n, p50, p99, rate, errors = run(clients, requests, search)
    total += n
    print(f"{'search, ' + str(clients) + ' clients':<32} {n:>8} {p50:>8.1f} {p99:>8.1f} {rate:>8.1f} {errors:>6}")
for clients, requests in [(1, 20), (4, 40)]:
    n, p50, p99, rate, errors = run(clients, requests, classify)
    total += n
    print(f"{'classify 100 texts, ' + str(clients) + ' clients':<32} {n:>8} {p50:>8.1f} {p99:>8.1f} {rate * 100:>8.1f} {errors:>6}  (texts/s)")
# Memory over 10,000 more searches, measured after the phases above set the high-water mark of
# the allocator (which keeps freed pages): flat means nothing grows per request.
after_phases = rss_mib()
run(8, 5000, search)
middle = rss_mib()
run(8, 5000, search)
print(f"server RSS: {before:.0f} MiB after warm-up, {after_phases:.0f} MiB after the phases above ({total} requests), "
      f"{middle:.0f} MiB after 5,000 more searches, {rss_mib():.0f} MiB after 10,000 more")
