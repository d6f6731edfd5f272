"""footfall on a real ClickHouse cluster: ZooKeeper and two ClickHouse 18.16 shards on loopback.

Usage: python3 tests/cluster/check.py path/to/footfall [--bench SECONDS]

What it builds: Debian's ZooKeeper, and two clickhouse-server processes forming the cluster `ff`
(shard 1 and shard 2, one replica each, ReplicatedMergeTree tables, distributed DDL through
ZooKeeper). footfall applies its schema with `footfall migrate` in cluster mode (shard-local
tables ON CLUSTER, Distributed tables over them), then two footfall instances serve at once:
  A  writes through the Distributed table (clickhouse.insert = "distributed", the default),
  B  writes straight into each shard's table (clickhouse.insert = "local", shard_urls),
both with one secret and the salts shared through ClickHouse (salts.store = "clickhouse").

Checked, each as one line of output:
  * the schema lands on both shards, and footfall's own shard choice is ClickHouse's;
  * under load from both instances, shard 2 is killed and restarted: every event answered 202
    is readable exactly once through the Distributed table, and both shards hold data;
  * the same visitor gets the same visitor and fingerprint ids from both instances;
  * the named dashboard queries (through `footfall stats`, after `footfall rollup run`) give the
    answers recorded on a single node (tests/fixtures/analytics/answers.json);
  * a database holding data, made with `footfall migrate --to 4`, upgraded by `footfall migrate`
    across the migrations that rebuild tables: the new tables say what the old ones said.
With --bench, also measures events/s landed through each insert mode (scripts/loadtest.sh).
"""

import http.client
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# The fixture's staging, shared with the single-node check (tests/analytics/check.py).
_spec = importlib.util.spec_from_file_location("analytics_check", os.path.join(ROOT, "tests", "analytics", "check.py"))
_analytics = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_analytics)
import_columns, whole, free_port = _analytics.import_columns, _analytics.whole, _analytics.free_port
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "analytics")
CLUSTER = "ff"
SECRET = "cluster-test-secret-shared-by-every-instance"
CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/156.0.0.0 Safari/537.36")

# One record of results for both scripts: `check` appends to this list and counts passes there.
check, failures = _analytics.check, _analytics.failures


class TimedOut(Exception):
    """A wait that ran out: a failure of the run, reported with what was being waited for."""


def wait_for(what, probe, timeout):
    deadline = time.time() + timeout
    while True:
        try:
            v = probe()
            if v:
                return v
        except Exception:  # noqa: BLE001  (not up yet)
            pass
        if time.time() > deadline:
            raise TimedOut(f"timed out waiting for {what}")
        time.sleep(0.2)


_taken = set()


def server_port():
    """A free loopback port below the kernel's ephemeral range, for a server that is restarted.

    A port from the ephemeral range (what binding port 0 gives) can be handed to an outgoing
    connection while its server is down (a client retrying the down server can even connect to
    itself on it), and the restarted server then cannot bind it. A shard restarted under load once
    failed to come back here within 90 s. The kernel never picks ports below the range for
    outgoing connections.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(1000):
        port = random.randrange(10000, max(low, 10001))
        if port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


class ZooKeeper:
    """Debian's ZooKeeper, standalone, on a free port."""

    def __init__(self, work):
        jar = "/usr/share/java/zookeeper.jar"
        if not os.path.exists(jar) or not shutil.which("java"):
            sys.exit("ZooKeeper is not installed (scripts/test.sh installs the zookeeper package)")
        self.port = free_port()
        self.dir = os.path.join(work, "zk")
        os.makedirs(self.dir)
        self.log = open(os.path.join(work, "zk.log"), "w")
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-cp", ":".join(p for p in (jar, "/usr/share/java/slf4j-simple.jar") if os.path.exists(p)),
             "-Dzookeeper.admin.enableServer=false", "-Dzookeeper.4lw.commands.whitelist=srvr",
             "org.apache.zookeeper.server.ZooKeeperServerMain", str(self.port), self.dir],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for("ZooKeeper", self.serving, 60)

    def serving(self):
        # Not `ruok`: it answers as soon as the port is open, before sessions are accepted (and
        # an 18.16 server whose first ZooKeeper session fails can crash).
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"srvr")
            return b"Mode:" in s.recv(4096)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Shard:
    """One clickhouse-server 18.16 process: replica `replica` of shard `num` of the cluster."""

    def __init__(self, work, num, zk_port, replica=1):
        self.num, self.replica = num, replica
        self.name = f"shard {num} replica {replica}"
        self.dir = os.path.join(work, f"shard{num}r{replica}")
        os.makedirs(self.dir)
        self.http, self.tcp, self.interserver = server_port(), server_port(), server_port()
        self.binary = shutil.which("clickhouse-server") or "/usr/sbin/clickhouse-server"
        self.zk_port = zk_port
        self.proc = None

    def configure(self, servers):
        d = self.dir
        remote = ""
        for num in sorted({s.num for s in servers}):
            replicas = "".join(f"<replica><host>127.0.0.1</host><port>{s.tcp}</port></replica>"
                               for s in servers if s.num == num)
            remote += f"<shard><internal_replication>true</internal_replication>{replicas}</shard>"
        with open(os.path.join(d, "users.xml"), "w") as f:
            f.write("""<yandex><profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
<quotas><default></default></quotas></yandex>""")
        with open(os.path.join(d, "config.xml"), "w") as f:
            f.write(f"""<yandex>
<logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog></logger>
<http_port>{self.http}</http_port><tcp_port>{self.tcp}</tcp_port><listen_host>127.0.0.1</listen_host>
<interserver_http_port>{self.interserver}</interserver_http_port><interserver_http_host>127.0.0.1</interserver_http_host>
<timezone>UTC</timezone>
<path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path><user_files_path>{d}/uf/</user_files_path>
<format_schema_path>{d}/fs/</format_schema_path>
<users_config>{d}/users.xml</users_config><default_profile>default</default_profile>
<default_database>default</default_database><mark_cache_size>268435456</mark_cache_size>
<remote_servers><{CLUSTER}>{remote}</{CLUSTER}></remote_servers>
<zookeeper><node><host>127.0.0.1</host><port>{self.zk_port}</port></node><session_timeout_ms>30000</session_timeout_ms></zookeeper>
<macros><shard>{self.num:02d}</shard><replica>r{self.replica}</replica></macros>
<distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
</yandex>""")

    def start(self):
        self.proc = subprocess.Popen([self.binary, f"--config-file={self.dir}/config.xml"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(self.name, lambda: self.query("SELECT 1", db="default").strip() == "1", 90)
        except TimedOut:
            print(f"     {self.name} did not start; exit status {self.proc.poll()}; its error log ends:\n"
                  + self.log_tail(), flush=True)
            raise

    def log_tail(self, lines=15):
        try:
            with open(os.path.join(self.dir, "server.err.log"), errors="replace") as f:
                return "".join(f"       {l}" for l in f.readlines()[-lines:])
        except OSError as e:
            return f"       ({e})"

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http}"

    def query(self, sql, db="footfall", settings=None):
        params = {"database": db}
        params.update(settings or {})
        req = urllib.request.Request(f"{self.url}/?" + urllib.parse.urlencode(params), data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(e.read().decode()[:600]) from None


class Footfall:
    """`footfall serve` in cluster mode."""

    def __init__(self, binary, work, name, env):
        self.binary, self.name = binary, name
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update({
            "FOOTFALL_DATA_DIR": os.path.join(work, name),
            "FOOTFALL_LISTEN": f"127.0.0.1:{self.port}",
            "FOOTFALL_LOG": "warn",
            "FOOTFALL_SECRET": SECRET,
            "FOOTFALL_SITES": "demo=http://localhost:*,shop=https://shop.example",
            "FOOTFALL_TRUSTED_PROXIES": "127.0.0.1/32",
            "FOOTFALL_RATE_PER_SECOND": "100000",
            "FOOTFALL_RATE_BURST": "100000",
            "FOOTFALL_CLICKHOUSE_CLUSTER": CLUSTER,
            "FOOTFALL_SALT_STORE": "clickhouse",
            "FOOTFALL_BATCH_PERIOD_MS": "200",
            "FOOTFALL_ROLLUP_INTERVAL_SECS": "0",
        })
        self.env.update(env)
        self.err = open(os.path.join(work, f"{name}.log"), "w")
        self.proc = None

    def run(self, *args, check=True):
        r = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=600)
        if check and r.returncode != 0:
            failures.append(f"footfall {' '.join(args)}")
            raise RuntimeError(f"footfall {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def start(self):
        self.proc = subprocess.Popen([self.binary, "serve"], env=self.env, stdout=self.err, stderr=self.err)
        wait_for(f"footfall {self.name}", lambda: self.get("/healthz")[0] == 200, 120)

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def metric(self, name):
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def beacon(sid, seq, site="demo"):
    return json.dumps({
        "v": 1, "site": site, "kind": "pageview", "url": f"http://localhost:3000/p{seq % 7}",
        "sid": sid, "seq": seq, "consent": "granted",
        "device": {"tz": "Asia/Almaty", "tzo": 300, "langs": ["kk-KZ", "ru-RU"], "cores": 8,
                   "canvas": {"h": "9f2c11aa00bb33cc", "stable": True},
                   "screen": {"w": 1920, "h": 1080, "aw": 1920, "ah": 1040, "cd": 24, "dpr": 1.0}},
    })


def post(conn, body, ip):
    conn.request("POST", "/api/event", body=body, headers={
        "Content-Type": "text/plain;charset=UTF-8", "Origin": "http://localhost:3000",
        "X-Forwarded-For": ip, "User-Agent": CHROME_UA})
    r = conn.getresponse()
    r.read()
    return r.status


class LostAcks:
    """An HTTP proxy in front of one ClickHouse server that loses the answers of the first
    `drops` INSERTs into `events`: each INSERT is carried out, then the connection is closed
    without an answer, as when a network or a server dies between commit and reply."""

    def __init__(self, target_port, drops):
        import http.server

        self.dropped = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def forward(self):
                data = self.body()
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("query", [""])[0]
                head = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("host", "connection", "transfer-encoding", "content-length")}
                c = http.client.HTTPConnection("127.0.0.1", target_port, timeout=120)
                c.request(self.command, self.path, body=data, headers=head)
                r = c.getresponse()
                answer = r.read()
                c.close()
                if query.replace("`", "").startswith("INSERT INTO events(") and r.status == 200 and proxy.dropped < drops:
                    proxy.dropped += 1
                    self.close_connection = True
                    return
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


class Load:
    """Senders posting beacons to instances until stopped; remembers what got a 202."""

    def __init__(self, instances, senders):
        self.stop_flag = threading.Event()
        self.accepted = set()
        self.other = {}
        self.lock = threading.Lock()
        self.threads = []
        for i in range(senders):
            ff = instances[i % len(instances)]
            t = threading.Thread(target=self.run, args=(ff, f"load-{ff.name}-{i}", i), daemon=True)
            self.threads.append(t)
            t.start()

    def run(self, ff, sid, i):
        conn = http.client.HTTPConnection("127.0.0.1", ff.port, timeout=10)
        seq = 0
        while not self.stop_flag.is_set():
            seq += 1
            # Many visitors (addresses), so rows spread over both shards.
            ip = f"198.51.{i}.{seq % 250 + 1}"
            try:
                status = post(conn, beacon(sid, seq), ip)
            except Exception:  # noqa: BLE001  (no answer: not accepted, not counted)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", ff.port, timeout=10)
                continue
            with self.lock:
                if status == 202:
                    self.accepted.add((sid, seq))
                else:
                    self.other[status] = self.other.get(status, 0) + 1
            time.sleep(0.002)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join()


def main():
    binary = os.path.abspath(sys.argv[1])
    bench = int(sys.argv[sys.argv.index("--bench") + 1]) if "--bench" in sys.argv else 0
    work = tempfile.mkdtemp(prefix="footfall-cluster-")
    zk = servers = None
    instances = []
    t0 = time.time()
    try:
        zk = ZooKeeper(work)
        servers = [Shard(work, num, zk.port, replica) for num in (1, 2) for replica in (1, 2)]
        for s in servers:
            s.configure(servers)
        for s in servers:
            s.start()
        # The first replica of each shard is where footfall's shard URLs point.
        shards = [s for s in servers if s.replica == 1]
        replicas = [s for s in servers if s.replica == 2]
        version = shards[0].query("SELECT version()", db="default").strip()
        print(f"== ZooKeeper on {zk.port}, cluster {CLUSTER}: ClickHouse {version}, 2 shards x 2 replicas on HTTP ports "
              + ", ".join(str(s.http) for s in servers))
        check("every server sees the cluster's two shards",
              [s.query(f"SELECT count(DISTINCT shard_num) FROM system.clusters WHERE cluster = '{CLUSTER}'", db="default").strip()
               for s in servers], ["2"] * 4)

        base = {"FOOTFALL_CLICKHOUSE_URL": shards[0].url}
        # The schema: footfall migrate, ON CLUSTER, as an operator runs it before the instances.
        migrator = Footfall(binary, work, "migrate", base)
        t = time.time()
        out = migrator.run("migrate").stdout
        print(f"     footfall migrate on the cluster took {time.time() - t:.1f} s")
        migrations = sorted(f[:-4] for f in os.listdir(os.path.join(ROOT, "schema")) if re.match(r"\d{3}_\w+\.sql$", f))
        check("migrate applied every migration", [l for l in out.splitlines() if l.startswith("applied: ")],
              ["applied: " + m for m in migrations])
        again = migrator.run("migrate").stdout
        check("migrate again applies nothing", [l for l in again.splitlines() if l.startswith("applied: ") or l.startswith("schema is current")],
              [f"schema is current (version {int(migrations[-1][:3])})"])
        for s in servers:
            tables = s.query("SELECT name FROM system.tables WHERE database = 'footfall' ORDER BY name", db="default").split()
            check(f"{s.name} has events_local, the Distributed events and the views",
                  all(t in tables for t in ["events", "events_local", "session_states_local", "session_states_mv", "salts_local"]), True)
            engine = s.query("SELECT engine FROM system.tables WHERE database = 'footfall' AND name = 'events_local'", db="default").strip()
            check(f"{s.name}: events_local is replicated", engine, "ReplicatedReplacingMergeTree")

        # Two instances, one per insert mode, sharing the cluster.
        a = Footfall(binary, work, "a", {**base, "FOOTFALL_CLICKHOUSE_INSERT": "distributed"})
        b = Footfall(binary, work, "b", {**base, "FOOTFALL_CLICKHOUSE_INSERT": "local",
                                         "FOOTFALL_CLICKHOUSE_SHARD_URLS": ",".join(s.url for s in shards)})
        instances = [a, b]
        for ff in instances:
            ff.start()

        # The same visitor through both instances: the same ids.
        for ff, sid in ((a, "same-a"), (b, "same-b")):
            conn = http.client.HTTPConnection("127.0.0.1", ff.port, timeout=10)
            check(f"instance {ff.name} accepts a beacon", post(conn, beacon(sid, 1), "203.0.113.77"), 202)
            conn.close()
        ids = wait_for("the two beacons", lambda: (lambda r: r if len(r) == 2 else None)(shards[0].query(
            "SELECT session_id, hex(visitor_id), hex(fingerprint_id) FROM events "
            "WHERE session_id IN ('same-a', 'same-b') ORDER BY session_id").splitlines()), 30)
        va, vb = (l.split("\t") for l in ids)
        check("one visitor id from both instances (shared salt)", va[1], vb[1])
        check("one fingerprint id from both instances (shared secret)", va[2], vb[2])

        def replicas_agree(where="1", sync=True):
            """Whether the replicas of each shard hold as many `events_local` rows matching `where`.
            `sync=False` skips SYNC REPLICA, which with merges stopped waits for merges that never run."""
            if sync:
                for srv in servers:
                    srv.query("SYSTEM SYNC REPLICA footfall.events_local")
            counts = {}
            for srv in servers:
                counts.setdefault(srv.num, set()).add(srv.query(f"SELECT count() FROM events_local WHERE {where}").strip())
            return all(len(c) == 1 for c in counts.values())

        # INSERTs that land but whose answers are lost, while the replicas of each shard differ
        # (fetches stopped, so only the replica that took a part has it): footfall must look up what
        # landed without being misled by the replica that lacks it, and send nothing twice. Merges
        # are stopped too: a row sent twice would otherwise be collapsed by ReplacingMergeTree
        # before it is counted, and the check could not see it.
        for srv in servers:
            srv.query("SYSTEM STOP FETCHES footfall.events_local")
            srv.query("SYSTEM STOP MERGES footfall.events_local")
        # Each batch loses the answer of its shard-1 INSERT (a replica on this server), then, after
        # the retry finds those rows, of its shard-2 INSERT (another server's replica): 12 rounds,
        # 24 answers. Asking shard 2's replicas at random stored dozens of rows twice here.
        rounds, t_lost = 12, time.time()
        proxy = LostAcks(shards[0].http, drops=2 * rounds)
        c = Footfall(binary, work, "c", {"FOOTFALL_CLICKHOUSE_URL": proxy.url, "FOOTFALL_CLICKHOUSE_INSERT": "distributed"})
        instances.append(c)
        c.start()
        sent = 0
        for round_ in range(rounds):
            conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
            for i in range(80):
                sent += post(conn, beacon(f"lost-ack-{round_}", i), f"192.0.2.{i + 1}") == 202
            conn.close()
            try:
                wait_for(f"round {round_} delivered", lambda: c.metric("footfall_spool_pending_records") == 0, 60)
            except TimedOut:
                pass
        check(f"the proxy lost the answers of {2 * rounds} INSERTs that had landed", proxy.dropped, 2 * rounds)
        print(f"     instance c: {sent} events in {time.time() - t_lost:.0f} s, {c.metric('footfall_rows_already_delivered_total')}"
              f" rows found already delivered, {c.metric('footfall_rows_inserted_total')} rows inserted")
        held = [int(srv.query("SELECT count() FROM events_local WHERE session_id LIKE 'lost-ack-%'").strip()) for srv in servers]
        print(f"     lost-ack rows held by each replica while fetches are stopped: {held}")
        check("with fetches stopped, the replicas of shard 2 hold different rows (the case looked up)",
              held[2] != held[3], True)
        for srv in servers:
            srv.query("SYSTEM START FETCHES footfall.events_local")
        try:
            wait_for("the replicas of each shard to agree again",
                     lambda: replicas_agree("session_id LIKE 'lost-ack-%'", sync=False), 90)
        except TimedOut as e:
            check(str(e), False, True)
        twice = shards[0].query("SELECT session_id, seq, count() AS n FROM events WHERE session_id LIKE 'lost-ack-%' "
                                "GROUP BY session_id, seq HAVING n > 1 ORDER BY session_id, seq LIMIT 5").split("\n")
        check("after lost answers, with replicas that differ: nothing stored twice (rows before any merge)",
              [l for l in twice if l], [])
        check("after lost answers: every accepted event stored",
              int(shards[0].query("SELECT count() FROM events WHERE session_id LIKE 'lost-ack-%'").strip()), sent)
        for srv in servers:
            srv.query("SYSTEM START MERGES footfall.events_local")
        proxy.stop()

        # Load from both instances; shard 2 is killed in the middle and comes back.
        load = Load([a, b], senders=6)
        time.sleep(4)
        for s in servers:
            if s.num == 2:
                s.kill()
        print("     shard 2 (both replicas) killed under load")
        time.sleep(6)
        during = len(load.accepted)
        for s in servers:
            if s.num == 2:
                s.start()
        print("     shard 2 back")
        time.sleep(4)
        load.stop()
        accepted = load.accepted
        print(f"     {len(accepted)} events answered 202 ({during} before shard 2 came back), other answers: {load.other}")
        check("nothing was refused while a shard was down (the spool took it)", load.other, {})

        # Delivered: both spools empty. Then every replica has fetched what its shard got (an INSERT
        # is acknowledged once one replica has it; a replica that was down catches up from
        # ZooKeeper's log), so a read through the Distributed table may use any of them.
        try:
            wait_for("both spools to drain",
                     lambda: all(ff.metric("footfall_spool_pending_records") == 0 for ff in instances), 120)
        except TimedOut:
            pass
        try:
            # A replica that was down pulls the parts it missed from ZooKeeper's log; SYNC REPLICA
            # on 18.16 waits only for what is already in its queue, so poll until replicas agree.
            wait_for("the replicas of each shard to agree", replicas_agree, 90)
        except TimedOut:
            pass
        rows = shards[0].query("SELECT session_id, seq, count() FROM events WHERE session_id LIKE 'load-%' GROUP BY session_id, seq").splitlines()
        stored = {}
        for l in rows:
            sid, seq, n = l.split("\t")
            stored[(sid, int(seq))] = int(n)
        check("every event answered 202 is in the Distributed table", sorted(accepted - stored.keys())[:5], [])
        check("none is there twice", sorted(k for k, n in stored.items() if n > 1)[:5], [])
        check("nothing is there that was not answered 202 (beyond requests cut off by the stop)",
              len(stored.keys() - accepted) <= 6, True)
        per_shard = [int(s.query("SELECT count() FROM events_local WHERE session_id LIKE 'load-%'").strip()) for s in shards]
        print(f"     rows per shard: {per_shard}")
        check("both shards hold data", all(n > 0 for n in per_shard), True)
        check("the shards together hold each event once", sum(per_shard), len(stored))
        # footfall's shard choice is ClickHouse's: on each shard, every row's key maps to it.
        for i, s in enumerate(shards):
            wrong = s.query("SELECT count() FROM events_local WHERE reinterpretAsUInt32(visitor_id) % 2 != " + str(i)).strip()
            check(f"shard {s.num} holds only its own visitors (both insert modes shard alike)", wrong, "0")
        for r in replicas:
            n = int(r.query("SELECT count() FROM events_local WHERE session_id LIKE 'load-%'").strip())
            check(f"{r.name} holds what replica 1 holds (replicated through ZooKeeper)", n, per_shard[r.num - 1])
        for ff in instances:
            errors = ff.metric('footfall_insert_errors_total{reason="retryable"}') or 0
            check(f"instance {ff.name}: INSERTs failed while shard 2 was down, and were retried", errors > 0, True)
            check(f"instance {ff.name}: spool drained", ff.metric("footfall_spool_pending_records"), 0.0)
            check(f"instance {ff.name}: today's salt is the shared one", ff.metric("footfall_salt_shared"), 1.0)
        check("one salt for today and one for tomorrow in the cluster",
              shards[0].query("SELECT count() FROM salts").strip(), "2")

        # The named queries on the cluster give the single-node answers.
        fx = {**base, "FOOTFALL_CLICKHOUSE_DATABASE": "fixture"}
        fixture = Footfall(binary, work, "fixture", fx)
        fixture.run("migrate")
        cols = [tuple(l.split("\t")) for l in shards[0].query(
            "SELECT name, type FROM system.columns WHERE database = 'fixture' AND table = 'events_local'").splitlines()]
        staged, converted = import_columns(cols)
        shards[0].query("CREATE TABLE default.events_import (" + ", ".join(staged) + ") ENGINE = Memory", db="default")
        with open(os.path.join(FIXTURES, "events.jsonl"), encoding="utf-8") as f:
            events = f.read()
        shards[0].query("INSERT INTO default.events_import FORMAT JSONEachRow\n" + events, db="default")
        shards[0].query("INSERT INTO events SELECT " + ", ".join(converted) + " FROM default.events_import",
                        db="fixture", settings={"insert_distributed_sync": "1"})
        check("fixture events loaded through the Distributed table",
              int(shards[0].query("SELECT count() FROM events", db="fixture").strip()), events.count("\n"))
        time.sleep(11)  # the rollup job leaves a day alone for 10 s after its last change
        fixture.run("rollup", "run")
        answers = json.load(open(os.path.join(FIXTURES, "answers.json"), encoding="utf-8"))
        for ans in answers:
            r = fixture.run("stats", ans["query"], "--site", ans["site"], "--from", ans["from"], "--to", ans["to"],
                            "--limit", str(ans["limit"]), check=False)
            if r.returncode != 0:
                check(f"cluster: {ans['query']} {ans['from']}..{ans['to']}", r.stderr.strip()[-300:], "")
                continue
            got = [whole(json.loads(l)) for l in r.stdout.splitlines()[1:]]
            check(f"cluster: {ans['query']} {ans['from']}..{ans['to']} = single node", got, ans["rows"])

        check_upgrade(binary, work, base, servers, shards)

        if bench:
            run_bench(shards, bench)
    except TimedOut as e:
        failures.append(str(e))
        print(f"FAIL {e}", flush=True)
    finally:
        for ff in instances:
            ff.stop()
        for s in servers or []:
            s.stop()
        if zk:
            zk.stop()
        if failures:
            print(f"(work directory kept for inspection: {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"cluster: {_analytics.passed} passed, {len(failures)} failed in {time.time() - t0:.0f} s")
    if failures:
        sys.exit(1)


SESSION_LINE = ("SELECT arrayStringConcat([session_id, argMinIfMerge(entry_path), argMaxIfMerge(exit_path), "
                "toString(uniqExactIfMerge(pageviews)), toString(uniqExactMerge(events)), "
                "toString(arraySum(arrayMap(x -> toUInt64(x.2), groupUniqArrayIfMerge(engaged)))), "
                "argMinMerge(country), toString(minMerge(start)), toString(maxMerge(end)), toString(min(day))], ' ') "
                "FROM {table} GROUP BY session_id ORDER BY session_id")


def upgrade_events(sessions, first_seq, pages, day, country):
    """VALUES for `pages` page views of each session from `first_seq` on, each event with a
    visitor id of its own that starts with its seq: the shard key (the id's first 4 bytes) sends
    odd and even page views of one session to different shards."""
    rows = []
    for s in sessions:
        for seq in range(first_seq, first_seq + pages):
            rows.append(f"('{uuid.uuid4()}', 'shop', 'pageview', '{day} 10:{seq:02d}:00', {seq * 1000}, '{s}', {seq}, "
                        f"'/{s}/{seq}', '{country}', '{(str(seq) + '-' + s).ljust(16, '_')[:16]}', 0)")
    return rows


def settled(read, ok, timeout=60):
    """`read()` once `ok` holds for it, or what it gave last: a read through a Distributed table
    may reach a replica that has not yet fetched the parts the other one took."""
    end, got = time.time() + timeout, read()
    while not ok(got) and time.time() < end:
        time.sleep(0.5)
        got = read()
    return got


def check_upgrade(binary, work, base, servers, shards):
    """A cluster holding data, upgraded across the migrations that rebuild tables (005's narrow
    dimension feed, 006's session states filled from `events` and from 003's `sessions`, 007's
    drop): what 003's tables said is what the new ones say, on every shard, and the new views go on
    counting each event once."""
    up = Footfall(binary, work, "upgrade", {**base, "FOOTFALL_CLICKHOUSE_DATABASE": "upgraded"})
    first = up.run("migrate", "--to", "4").stdout
    check("migrate --to 4 on the cluster stops after 004",
          [l for l in first.splitlines() if l.startswith(("applied: ", "left "))],
          ["applied: 001_events", "applied: 002_privacy", "applied: 003_analytics", "applied: 004_salts",
           "left for a later run (after --to): 005_dimension_input",
           "left for a later run (after --to): 006_session_states",
           "left for a later run (after --to): 007_drop_sessions"])
    columns = "(event_id, site, kind, received_at, client_ts, session_id, seq, path, country, visitor_id, engaged_ms)"

    def insert(rows):
        shards[0].query(f"INSERT INTO events {columns} VALUES " + ", ".join(rows), db="upgraded",
                        settings={"insert_distributed_sync": "1"})

    def lines(table):
        return shards[0].query(SESSION_LINE.format(table=table), db="upgraded").splitlines()

    # October's sessions are only in `sessions` once October's events are dropped (a shorter
    # events retention); November's are in both.
    older = [f"old{i:02d}" for i in range(6)]
    kept = [f"cur{i:02d}" for i in range(30)]
    insert(upgrade_events(older, 1, 3, "2026-10-30", "KZ"))
    insert(upgrade_events(kept, 1, 4, "2026-11-02", "DE"))
    shards[0].query("ALTER TABLE upgraded.events_local ON CLUSTER ff DROP PARTITION 202610", db="upgraded")
    inserted = 6 * 3 + 30 * 4
    held = settled(lambda: [int(s.query("SELECT count() FROM events_local", db="upgraded").strip()) for s in servers],
                   lambda h: h[0] == h[1] and h[2] == h[3] and h[0] + h[2] == 30 * 4)
    check("before the upgrade both shards hold November's events (October's dropped) on both replicas",
          (held[0] > 0, held[2] > 0, held[0] + held[2], held[0] == held[1], held[2] == held[3]),
          (True, True, 30 * 4, True, True))
    on_shard = [set(s.query("SELECT DISTINCT session_id FROM events_local", db="upgraded").split()) for s in shards]
    check("each of November's sessions has page views on both shards", len(on_shard[0] & on_shard[1]), 30)
    whole_sessions = (36, "cur00 /cur00/1 /cur00/4 4 4 0 DE 2026-11-02 10:01:00 2026-11-02 10:04:00 2026-11-02",
                      "old05 /old05/1 /old05/3 3 3 0 KZ 2026-10-30 10:01:00 2026-10-30 10:03:00 2026-10-30")
    before = settled(lambda: lines("sessions"), lambda b: (len(b), b[0], b[-1]) == whole_sessions)
    check("003's sessions hold every session, whole across the shards", (len(before), before[0], before[-1]),
          whole_sessions)
    t = time.time()
    out = up.run("migrate").stdout
    print(f"     the upgrade from 004 on the cluster took {time.time() - t:.1f} s")
    check("migrate applies 005, 006 and 007 on the cluster", [l for l in out.splitlines() if l.startswith("applied: ")],
          ["applied: 005_dimension_input", "applied: 006_session_states", "applied: 007_drop_sessions"])
    check("after the upgrade session_states says what sessions said, session by session",
          settled(lambda: lines("session_states"), lambda a: a == before), before)
    for s in servers:
        names = set(s.query("SELECT name FROM system.tables WHERE database = 'upgraded'", db="default").split())
        check(f"{s.name}: 003's session tables are gone, the new ones are there",
              (sorted(names & {"sessions", "sessions_local", "sessions_mv"}),
               sorted(names & {"session_states", "session_states_local", "session_states_mv",
                               "dimension_input_local", "dimension_input_mv"})),
              ([], ["dimension_input_local", "dimension_input_mv", "session_states", "session_states_local",
                    "session_states_mv"]))
    # After the upgrade: later pages of the kept sessions and new sessions.
    insert(upgrade_events(kept, 5, 2, "2026-11-02", "DE"))
    insert(upgrade_events([f"new{i:02d}" for i in range(10)], 1, 2, "2026-11-03", "US"))
    inserted += 30 * 2 + 10 * 2
    def direct():
        return shards[0].query(
            "SELECT arrayStringConcat([session_id, argMin(path, seq), argMax(path, seq), toString(count()), "
            "toString(count()), '0', argMin(country, seq), toString(min(received_at)), toString(max(received_at)), "
            "toString(min(toDate(received_at)))], ' ') FROM events GROUP BY session_id ORDER BY session_id",
            db="upgraded").splitlines()

    after, events_say = settled(lambda: (lines("session_states"), direct()),
                                lambda r: len(r[1]) == 40 and [l for l in r[0] if not l.startswith("old")] == r[1])
    check("the new view goes on from the carried states: every session as its events say",
          ([l for l in after if not l.startswith("old")], len(events_say)), (events_say, 40))
    check("and the sessions only 003's table knew are still there", [l for l in after if l.startswith("old")],
          [l for l in before if l.startswith("old")])
    want = ["DE", str(30 * 6), "KZ", str(6 * 3), "US", str(10 * 2)]
    counted = settled(lambda: shards[0].query(
        "SELECT value, sumMerge(events) FROM dimension_stats WHERE dimension = 'country' GROUP BY value ORDER BY value",
        db="upgraded").split(), lambda c: c == want)
    check("dimension_stats counts every event once, before and after 005's new feed",
          counted, want)
    check("(that is every event inserted)", sum(int(n) for n in counted[1::2]), inserted)


def run_bench(shards, secs):
    """events/s landed through each insert mode, by scripts/loadtest.sh against this cluster."""
    for mode in ("distributed", "local"):
        env = dict(os.environ)
        env.update({
            "FOOTFALL_CLICKHOUSE_URL": shards[0].url, "FOOTFALL_CLICKHOUSE_CLUSTER": CLUSTER,
            "FOOTFALL_CLICKHOUSE_DATABASE": f"bench_{mode}", "FOOTFALL_CLICKHOUSE_INSERT": mode,
            "FOOTFALL_CLICKHOUSE_SHARD_URLS": ",".join(s.url for s in shards), "SKIP_CEILING": "1",
        })
        subprocess.run([os.path.join(ROOT, "target", "release", "footfall"), "migrate"], env={**env, "FOOTFALL_DATA_DIR": tempfile.mkdtemp()},
                       check=True, capture_output=True)
        print(f"== load test, insert = {mode}", flush=True)
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "loadtest.sh"), str(secs), "64"], env=env, check=False)


if __name__ == "__main__":
    main()
