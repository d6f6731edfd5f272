#!/usr/bin/env python3
"""Checks of footfall's deployment files (deploy/), run by tests/deploy/check.sh.

Usage: python3 tests/deploy/check_deploy.py SECTION...   (from anywhere)
Sections: yaml compose dockerfile k8s systemd clickhouse18 initdb node binary

Prints `ok   <what>`, `FAIL <what>: <why>`, `skip <what>: <why>` (a limit of this machine or of the
tools, never a silent pass), and `note <text>`; exits 1 if anything failed.

No Docker engine and no Kubernetes cluster are available here, so images are not built, the
compose stack is not started and nothing is applied to a cluster. What is run for real instead:
ClickHouse 18.16 with the config files compose mounts, ClickHouse 26.x (chdb) on the SQL the init
script generates, systemd-analyze on the unit, the Node stage's npm commands on the files the
build context would hold, and the footfall binary (target/release/footfall, if built) with the
environment compose, Kubernetes and systemd would give it.
"""

import fnmatch
import glob
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(DEPLOY, "k8s")

# Settings the binary does not read yet but deploy/ uses (being added on the Rust side).
PENDING_SETTINGS = {"FOOTFALL_SALT_STORE", "FOOTFALL_CLICKHOUSE_CLUSTER", "FOOTFALL_CLICKHOUSE_INSERT"}
K8S_VERSIONS = ["1.37.0", "1.30.0"]  # newest schemas shipped by kubernetes-validate; oldest we claim

counts = {"ok": 0, "FAIL": 0, "skip": 0}


def ok(msg):
    counts["ok"] += 1
    print(f"ok   {msg}", flush=True)


def fail(msg):
    counts["FAIL"] += 1
    print(f"FAIL {msg}", flush=True)


def skip(msg):
    counts["skip"] += 1
    print(f"skip {msg}", flush=True)


def note(msg):
    print(f"note {msg}", flush=True)


def check(cond, msg, why=""):
    if cond:
        ok(msg)
    else:
        fail(f"{msg}: {why}" if why else msg)
    return cond


def rel(path):
    return os.path.relpath(path, ROOT)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def yaml_docs(path):
    import yaml
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def git_mode(path):
    """The mode git records for a tracked file ('100755'), or None when untracked."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files", "-s", "--", rel(path)],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.split()[0] if out else None


# ------------------------------------------------------------------ settings footfall knows

def known_settings():
    """FOOTFALL_* variables the Rust code reads (src/), plus the pending ones."""
    names = set()
    for path in glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True):
        names |= set(re.findall(r'"(FOOTFALL_[A-Z0-9_]+)"', read(path)))
    return names


def check_setting_names(where, names, known):
    unknown = sorted(n for n in names if n.startswith("FOOTFALL_") and n not in known and n not in PENDING_SETTINGS)
    pending = sorted(n for n in names if n in PENDING_SETTINGS and n not in known)
    check(not unknown, f"{where}: every FOOTFALL_* name is one footfall reads (src/)", f"unknown: {unknown}")
    if pending:
        note(f"{where}: {', '.join(pending)} not read by src/ yet (being added on the Rust side)")


# ------------------------------------------------------------------ .env files and interpolation

def parse_env_file(path):
    env, order = {}, []
    for n, line in enumerate(read(path).splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", s)
        if not m:
            raise ValueError(f"{rel(path)}:{n}: not NAME=value: {line!r}")
        env[m.group(1)] = m.group(2)
        order.append(m.group(1))
    return env, order


_VAR = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, env, errors, refs):
    """Compose's variable interpolation ($$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e},
    ${VAR?e}, ${VAR:+a}, ${VAR+a}) of one string."""
    def repl(m):
        if m.group(1):
            return "$"
        if m.group(3):
            refs.add(m.group(3))
            return env.get(m.group(3), "")
        mm = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", m.group(2), re.S)
        if not mm:
            errors.append(("syntax", m.group(0)))
            return ""
        name, op, arg = mm.group(1), mm.group(2), mm.group(3) or ""
        refs.add(name)
        is_set, val = name in env, env.get(name, "")
        if op is None:
            return val
        if op == ":-":
            return val if val else interpolate(arg, env, errors, refs)
        if op == "-":
            return val if is_set else interpolate(arg, env, errors, refs)
        if op == ":?":
            if not val:
                errors.append((name, arg))
            return val
        if op == "?":
            if not is_set:
                errors.append((name, arg))
            return val
        if op == ":+":
            return interpolate(arg, env, errors, refs) if val else ""
        return interpolate(arg, env, errors, refs) if is_set else ""
    return _VAR.sub(repl, value)


def interpolate_doc(doc, env):
    errors, refs = [], set()

    def walk(x):
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, str):
            return interpolate(x, env, errors, refs)
        return x
    return walk(doc), errors, refs


def duration_secs(v):
    if isinstance(v, (int, float)):
        return float(v)
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(v)):
        total += float(m.group(1)) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[m.group(2)]
        pos = m.end()
    if pos != len(str(v)):
        raise ValueError(f"not a duration: {v!r}")
    return total


def filled_env_example():
    """deploy/.env.example with its secrets filled in by the command its header gives."""
    tmp = tempfile.mkdtemp(prefix="footfall-env.")
    try:
        path = os.path.join(tmp, ".env")
        shutil.copy(os.path.join(DEPLOY, ".env.example"), path)
        text = read(path)
        m = re.search(r"^#   (for v in .*?done)$", text, re.M | re.S)
        if not m:
            raise ValueError(".env.example: no `for v in ...; done` command in the header")
        cmd = "\n".join(l[1:] if l.startswith("#") else l for l in m.group(1).splitlines())
        cmd = cmd.replace("deploy/.env", path)
        subprocess.run(["bash", "-c", cmd], check=True, timeout=30)
        env, _ = parse_env_file(path)
        return env
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ section: yaml

def section_yaml():
    import yaml
    files = sorted(glob.glob(os.path.join(DEPLOY, "**", "*.y*ml"), recursive=True)) + \
        sorted(glob.glob(os.path.join(DEPLOY, ".*.y*ml")))
    bad = []
    for path in files:
        try:
            yaml_docs(path)
        except yaml.YAMLError as e:
            bad.append(f"{rel(path)}: {str(e).splitlines()[0]}")
    check(not bad and files, f"yaml: all {len(files)} YAML files under deploy/ parse", "; ".join(bad))
    jfiles = sorted(glob.glob(os.path.join(DEPLOY, "**", "*.json"), recursive=True))
    bad = []
    for path in jfiles:
        try:
            json.loads(read(path))
        except ValueError as e:
            bad.append(f"{rel(path)}: {e}")
    if jfiles:
        check(not bad, f"yaml: all {len(jfiles)} JSON files under deploy/ parse", "; ".join(bad))
    xfiles = sorted(glob.glob(os.path.join(DEPLOY, "**", "*.xml"), recursive=True))
    bad = []
    for path in xfiles:
        try:
            ET.parse(path)
        except ET.ParseError as e:
            bad.append(f"{rel(path)}: {e}")
    check(not bad, f"yaml: all {len(xfiles)} XML files under deploy/ are well-formed", "; ".join(bad))


# ------------------------------------------------------------------ section: compose

def compose_resolved():
    raw = yaml_docs(os.path.join(DEPLOY, "compose.yaml"))[0]
    env = filled_env_example()
    env.setdefault("FOOTFALL_SITES", "")
    if not env["FOOTFALL_SITES"]:
        env["FOOTFALL_SITES"] = "shop=https://shop.example"
    doc, errors, refs = interpolate_doc(raw, env)
    return raw, env, doc, errors, refs


def section_compose():
    path = os.path.join(DEPLOY, "compose.yaml")
    raw = yaml_docs(path)[0]
    example, order = parse_env_file(os.path.join(DEPLOY, ".env.example"))
    known = known_settings()

    services = raw.get("services", {})
    check(set(services) == {"footfall", "clickhouse", "grafana"}, "compose: services footfall, clickhouse, grafana",
          f"got {sorted(services)}")

    # --- variables: .env.example as it is must be refused; filled in, everything resolves
    _, errors, refs = interpolate_doc(raw, example)
    required = sorted({n for n, _ in errors if n != "syntax"})
    example_required, block_required = [], False
    for line in read(os.path.join(DEPLOY, ".env.example")).splitlines():
        if not line.strip():
            block_required = False
        elif line.startswith("#"):
            block_required = block_required or "REQUIRED" in line
        elif block_required and line.endswith("="):
            example_required.append(line[:-1])
    check(len(required) >= 7, f"compose: refuses to start with .env.example unfilled ({len(required)} required variables unset: {', '.join(required)})",
          "expected the 7 secrets and FOOTFALL_SITES to be ${VAR:?...}")
    for name in ["FOOTFALL_SECRET", "FOOTFALL_ADMIN_TOKEN", "FOOTFALL_CLICKHOUSE_PASSWORD", "FOOTFALL_CLICKHOUSE_ADMIN_PASSWORD",
                 "FOOTFALL_CLICKHOUSE_ANALYST_PASSWORD", "CLICKHOUSE_DBA_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "FOOTFALL_SITES"]:
        if name not in required:
            fail(f"compose: {name} must be required (${{{name}:?...}}) and empty in .env.example")
    unmarked = [n for n in required if n not in example_required]
    check(not unmarked, "compose: every required variable is marked REQUIRED and left empty in .env.example", f"{unmarked}")
    missing = sorted(refs - set(example))
    unused = sorted(set(example) - refs)
    check(not missing, "compose: every variable compose.yaml reads is in .env.example", f"missing: {missing}")
    check(not unused, "compose: every variable in .env.example is read by compose.yaml", f"unused: {unused}")
    msgs = [arg for n, arg in errors if n != "syntax"]
    check(all("openssl rand" in a or "e.g." in a for a in msgs), "compose: each refusal says how to make the value",
          f"{[a for a in msgs if 'openssl rand' not in a and 'e.g.' not in a]}")
    check(not [e for e in errors if e[0] == "syntax"], "compose: interpolation syntax", f"{[e for e in errors if e[0] == 'syntax']}")

    _, env, doc, errors, _ = compose_resolved()
    filled = [n for n in required if n != "FOOTFALL_SITES" and re.fullmatch(r"[0-9a-f]{64}", env.get(n, ""))]
    check(len(filled) == len(required) - 1, "compose: the .env.example header's openssl loop fills every required secret",
          f"filled {filled} of {required}")
    check(not errors, "compose: resolves completely with .env.example filled in", f"{errors}")

    # --- the compose specification's JSON schema (check-jsonschema bundles it)
    try:
        import check_jsonschema  # noqa: F401
        have_cj = True
    except ImportError:
        have_cj = False
    if have_cj:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(doc, f)
        try:
            r = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", f.name],
                               capture_output=True, text=True, timeout=120)
            check(r.returncode == 0, "compose: valid against the Compose Specification schema (check-jsonschema vendor.compose-spec)",
                  (r.stdout + r.stderr).strip()[-600:])
            broken = json.loads(json.dumps(doc))
            broken["services"]["footfall"]["stop_grace_periodd"] = broken["services"]["footfall"].pop("stop_grace_period")
            with open(f.name, "w") as g:
                json.dump(broken, g)
            r = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", f.name],
                               capture_output=True, text=True, timeout=120)
            check(r.returncode != 0, "compose: the schema refuses a misspelt key (stop_grace_periodd), so the pass above means something")
        finally:
            os.unlink(f.name)
    else:
        skip("compose: Compose Specification schema: check-jsonschema is not installed")

    svc = doc["services"]
    # --- images
    for name, s in svc.items():
        if "build" in s:
            b = s["build"]
            ctx = os.path.normpath(os.path.join(DEPLOY, b.get("context", ".")))
            df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
            check(ctx == ROOT and os.path.isfile(df), f"compose: {name} is built from {rel(df)} with the repository as context",
                  f"context {ctx}, dockerfile {df}")
            check(s.get("pull_policy") == "build", f"compose: {name} is always built here, never pulled (pull_policy: build)")
            continue
        image = s.get("image", "")
        m = re.fullmatch(r"([\w./-]+):([\w.-]+)(@sha256:[0-9a-f]{64})?", image)
        check(bool(m) and m.group(2) != "latest" and re.search(r"\d+\.\d+\.\d+", m.group(2) or ""),
              f"compose: {name} image pinned to an exact version ({image})", "need name:X.Y.Z, never latest")
    # --- healthchecks and start order
    for name, s in svc.items():
        hc = s.get("healthcheck")
        check(hc and hc.get("test") and not hc.get("disable"), f"compose: {name} has a healthcheck")
    for name in ("footfall", "grafana"):
        dep = svc[name].get("depends_on", {})
        check(isinstance(dep, dict) and dep.get("clickhouse", {}).get("condition") == "service_healthy",
              f"compose: {name} waits for clickhouse to be healthy (depends_on: condition: service_healthy)")
    hc = svc["footfall"]["healthcheck"]["test"]
    check(hc[0] == "CMD" and hc[1:] == ["/usr/local/bin/footfall", "health", "--ready"],
          "compose: footfall's healthcheck is `footfall health --ready` (no shell or curl in the image)", f"{hc}")
    ch_hc = " ".join(svc["clickhouse"]["healthcheck"]["test"])
    check("${HOSTNAME}" in ch_hc and "/ping" in ch_hc,
          "compose: clickhouse is healthy only once it answers on its network address (not during initdb, when it listens on 127.0.0.1)", ch_hc)

    # --- state in named volumes, bind mounts exist
    vols = set((doc.get("volumes") or {}).keys())
    check({"footfall-data", "clickhouse-data", "grafana-data"} <= vols, "compose: named volumes footfall-data, clickhouse-data, grafana-data",
          f"{sorted(vols)}")
    want_state = {"footfall": ("footfall-data", "/var/lib/footfall"), "clickhouse": ("clickhouse-data", "/var/lib/clickhouse"),
                  "grafana": ("grafana-data", "/var/lib/grafana")}
    binds = []
    for name, s in svc.items():
        mounts = [v.split(":") for v in s.get("volumes", [])]
        vol, target = want_state[name]
        check([vol, target] in [m[:2] for m in mounts], f"compose: {name} keeps its state ({target}) in the named volume {vol}")
        for m in mounts:
            if m[0].startswith((".", "/")):
                binds.append((name, m))
    missing = []
    for name, m in binds:
        src = os.path.normpath(os.path.join(DEPLOY, m[0]))
        if not os.path.exists(src):
            missing.append(f"{name}: {m[0]}")
        if "ro" not in m[2:]:
            fail(f"compose: {name} mounts {m[0]} read-write (expected :ro)")
    check(not missing and binds, f"compose: all {len(binds)} files and directories compose mounts exist in the repository", f"missing: {missing}")

    # --- ClickHouse wiring
    ch = svc["clickhouse"]
    chenv = ch["environment"]
    targets = {m.split(":")[1]: m.split(":")[0] for m in ch["volumes"]}
    initdb = [t for t in targets if t.startswith("/docker-entrypoint-initdb.d/")]
    check(len(initdb) == 1 and initdb[0].endswith(".sh"), "compose: clickhouse runs exactly one init script, a .sh", f"{initdb}")
    if initdb:
        src = os.path.join(DEPLOY, targets[initdb[0]])
        mode = git_mode(src)
        check(os.access(src, os.X_OK) and mode in (None, "100755"),
              f"compose: {targets[initdb[0]]} is executable (git mode {mode or 'untracked'}; the entrypoint runs it, else sources it)")
    check(not any(t.endswith(".sql") for t in initdb), "compose: grants.sql is not in /docker-entrypoint-initdb.d (it would run with its CHANGE_ME placeholders)")
    check(targets.get(chenv.get("FOOTFALL_GRANTS_SQL", "")) == "./clickhouse/grants.sql",
          "compose: FOOTFALL_GRANTS_SQL names where deploy/clickhouse/grants.sql is mounted")
    check(chenv.get("CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT") == "1" and chenv.get("CLICKHOUSE_USER") not in (None, "", "default"),
          "compose: clickhouse administrator is a named user with SQL access management (no passwordless default)")
    dba_xml = [targets[t] for t in targets if t.startswith("/etc/clickhouse-server/users.d/")]
    if dba_xml:
        tree = ET.parse(os.path.join(DEPLOY, dba_xml[0]))
        user = tree.getroot().find("users")[0].tag
        check(user == chenv.get("CLICKHOUSE_USER"), f"compose: users.d file confines the administrator ({user}) named by CLICKHOUSE_USER")
        check(os.path.basename([t for t in targets if t.startswith("/etc/clickhouse-server/users.d/")][0]) > "default-user.xml",
              "compose: users.d file sorts after the entrypoint's default-user.xml (merged later, so replace= wins)")
    subnet = doc["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    check(chenv.get("FOOTFALL_CLICKHOUSE_CLIENT_NETWORKS") == subnet,
          f"compose: footfall's ClickHouse users may log in from the compose network only ({subnet})")
    for name, s in svc.items():
        for p in s.get("ports", []):
            check(str(p).startswith("127.0.0.1:"), f"compose: {name} is published on 127.0.0.1 by default ({p})")
    check("ports" not in ch, "compose: ClickHouse ports are not published")

    # --- footfall: secrets only from .env, settings names, grace period
    fenv = svc["footfall"]["environment"]
    for key in ("FOOTFALL_SECRET", "FOOTFALL_ADMIN_TOKEN", "FOOTFALL_CLICKHOUSE_PASSWORD", "FOOTFALL_CLICKHOUSE_ADMIN_PASSWORD"):
        rawv = services["footfall"]["environment"].get(key, "")
        check(rawv.startswith("${" + key + ":?"), f"compose: footfall's {key} comes from deploy/.env and is required")
    check(fenv.get("FOOTFALL_CLICKHOUSE_USER") == "footfall_ingest" and fenv.get("FOOTFALL_CLICKHOUSE_ADMIN_USER") == "footfall_admin",
          "compose: footfall delivers as footfall_ingest and migrates as footfall_admin")
    check(fenv.get("FOOTFALL_LISTEN") == "0.0.0.0:8080" and fenv.get("FOOTFALL_DATA_DIR") == "/var/lib/footfall",
          "compose: footfall listens on 0.0.0.0:8080 with data in /var/lib/footfall")
    check(fenv.get("FOOTFALL_SALT_STORE") == "local", "compose: one instance keeps its salt locally (FOOTFALL_SALT_STORE=local)")
    check_setting_names("compose footfall environment", fenv.keys(), known)
    for label, e in (("defaults", {}), (".env.example", example)):
        d, _, _ = interpolate_doc(raw, dict(e, **{k: "x" * 20 for k in required if not e.get(k)}))
        grace = duration_secs(d["services"]["footfall"]["stop_grace_period"])
        flush = float(d["services"]["footfall"]["environment"]["FOOTFALL_SHUTDOWN_FLUSH_SECS"])
        check(grace >= flush + 15, f"compose: stop_grace_period ({grace:g}s) exceeds FOOTFALL_SHUTDOWN_FLUSH_SECS ({flush:g}s) by 15s or more ({label})")
    sec = svc["footfall"]
    check(sec.get("read_only") is True and "ALL" in sec.get("cap_drop", []) and "no-new-privileges:true" in sec.get("security_opt", []),
          "compose: footfall runs read-only, without capabilities, no-new-privileges")

    # --- Grafana: pinned plugin, provisioning wired to the mounts
    genv = svc["grafana"]["environment"]
    pre = genv.get("GF_PLUGINS_PREINSTALL_SYNC", "") or genv.get("GF_INSTALL_PLUGINS", "")
    m = re.fullmatch(r"grafana-clickhouse-datasource[@ ](\d+\.\d+\.\d+)", pre)
    check(bool(m), f"compose: Grafana installs grafana-clickhouse-datasource pinned to a version ({pre})")
    gtargets = {v.split(":")[1]: v.split(":")[0] for v in svc["grafana"]["volumes"]}
    prov = os.path.join(DEPLOY, gtargets.get("/etc/grafana/provisioning", "missing"))
    ds = yaml_docs(os.path.join(prov, "datasources", "clickhouse.yaml"))[0]["datasources"][0]
    check(ds["type"] == "grafana-clickhouse-datasource", "grafana: data source uses the official ClickHouse plugin")
    check(ds["jsonData"].get("username") == "footfall_analyst", "grafana: data source reads as footfall_analyst")
    check(ds["jsonData"].get("host") == "clickhouse" and int(ds["jsonData"].get("port")) == 8123 and ds["jsonData"].get("protocol") == "http",
          "grafana: data source points at the clickhouse service over HTTP (8123)")
    pw = ds.get("secureJsonData", {}).get("password", "")
    pm = re.fullmatch(r"\$\{?([A-Z_]+)\}?", pw)
    check(bool(pm) and pm.group(1) in genv, "grafana: data source password comes from the Grafana container's environment",
          f"password {pw!r}")
    prov_dash = yaml_docs(os.path.join(prov, "dashboards", "footfall.yaml"))[0]["providers"][0]
    check(prov_dash["type"] == "file" and prov_dash["options"]["path"] in gtargets,
          f"grafana: dashboard provider loads {prov_dash['options']['path']}, which compose mounts from {gtargets.get(prov_dash['options']['path'])}")
    dash = os.path.join(DEPLOY, "grafana", "dashboards", "footfall.json")
    if os.path.exists(dash):
        text = read(dash)
        check("footfall-clickhouse" in text, "grafana: dashboards/footfall.json uses the data source uid footfall-clickhouse")
    else:
        skip("grafana: dashboards/footfall.json is not there yet (written on the Rust side)")


# ------------------------------------------------------------------ section: dockerfile

def dockerignore_patterns():
    pats = []
    for line in read(os.path.join(DEPLOY, "Dockerfile.dockerignore")).splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            pats.append(s)
    return pats


def ignored(path, pats):
    """Docker's .dockerignore semantics, simplified: Go filepath.Match per pattern with `**`,
    a pattern also excludes everything under a matched directory; `!` re-includes."""
    path = path.strip("/")
    result = False
    for p in pats:
        neg = p.startswith("!")
        p = p[1:] if neg else p
        p = p.strip("/")
        rx = "^" + re.escape(p).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]") + "(?:/.*)?$"
        if re.match(rx, path):
            result = not neg
    return result


def section_dockerfile():
    try:
        import dockerfile
    except ImportError:
        fail("dockerfile: the `dockerfile` package (BuildKit's parser) is not installed (pip install dockerfile)")
        return
    path = os.path.join(DEPLOY, "Dockerfile")
    cmds = dockerfile.parse_file(path)
    ok(f"dockerfile: deploy/Dockerfile parses with BuildKit's own parser ({len(cmds)} instructions)")

    args, stages, cur = {}, [], None
    for c in cmds:
        if c.cmd == "ARG" and cur is None:
            for v in c.value:
                k, _, d = v.partition("=")
                args[k] = d
        if c.cmd == "FROM":
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), ""), c.value[0])
            name = c.value[2] if len(c.value) >= 3 and c.value[1].upper() == "AS" else None
            cur = {"image": image, "name": name, "cmds": []}
            stages.append(cur)
        elif cur is not None:
            cur["cmds"].append(c)
    names = [s["name"] for s in stages]
    check(names == ["web", "build", "runtime"], "dockerfile: stages web (Node), build (Rust), runtime", f"{names}")
    for s in stages:
        m = re.fullmatch(r"([\w./-]+):([\w.-]+)", s["image"])
        check(bool(m) and m.group(2) != "latest", f"dockerfile: stage {s['name']} base image pinned to a tag ({s['image']})")
    byname = {s["name"]: s for s in stages}
    check(byname["web"]["image"].startswith("node:") and "bookworm" in byname["web"]["image"],
          f"dockerfile: web stage is Node on Debian bookworm ({byname['web']['image']})")
    check(byname["build"]["image"].startswith("rust:1") and "bookworm" in byname["build"]["image"],
          f"dockerfile: build stage is rust:1 on bookworm ({byname['build']['image']})")
    check(byname["runtime"]["image"] in ("debian:bookworm-slim",) or "distroless/cc" in byname["runtime"]["image"],
          f"dockerfile: runtime is debian:bookworm-slim or distroless/cc ({byname['runtime']['image']})")

    def cmds_of(stage, name):
        return [c for c in byname[stage]["cmds"] if c.cmd == name]

    # --- web stage rebuilds the assets
    web_runs = " ".join(" ".join(c.value) for c in cmds_of("web", "RUN"))
    for d in ("tracker-js", "dashboard"):
        check(re.search(rf"cd (\.\./)?{d} && npm ci", web_runs) and re.search(rf"cd (\.\./)?{d} && npm run build", web_runs),
              f"dockerfile: web stage runs npm ci and npm run build in {d}/")
        check(f"rm -rf" in web_runs and f"{d}/dist" in web_runs, f"dockerfile: web stage drops the committed {d}/dist before building")

    # --- build stage
    build_runs = [" ".join(c.value) for c in cmds_of("build", "RUN")]
    check(len([r for r in build_runs if "cargo build --release --locked" in r]) == 2,
          "dockerfile: cargo build --release --locked twice: dependencies (cached layer), then footfall")
    first_copy = [c for c in byname["build"]["cmds"] if c.cmd in ("COPY", "RUN")]
    dep_layer = [c for c in first_copy[: [i for i, c in enumerate(first_copy) if c.cmd == "RUN"][0]]]
    check(all(c.cmd == "COPY" and set(c.value[:-1]) <= {"Cargo.toml", "Cargo.lock", "deploy/docker/cargo-stubs.sh"} for c in dep_layer),
          "dockerfile: the dependency layer depends on Cargo.toml, Cargo.lock and the stub script only",
          f"{[c.original for c in dep_layer]}")

    # --- every COPY source
    pats = dockerignore_patterns()
    problems, from_stage = [], []
    copies = [(s["name"], c) for s in stages for c in s["cmds"] if c.cmd in ("COPY", "ADD")]
    for stage, c in copies:
        flags = dict(f.lstrip("-").split("=", 1) for f in c.flags if "=" in f)
        srcs = list(c.value[:-1])
        if "from" in flags:
            if flags["from"] not in names[: names.index(stage)]:
                problems.append(f"{c.original}: no earlier stage {flags['from']}")
            from_stage.append((stage, flags["from"], srcs, c.value[-1]))
            continue
        for src in srcs:
            hits = glob.glob(os.path.join(ROOT, src))
            if not hits:
                problems.append(f"{c.original}: {src} does not exist")
            for h in hits:
                if ignored(rel(h), pats):
                    problems.append(f"{c.original}: {src} is excluded by Dockerfile.dockerignore")
    check(all(c.cmd != "ADD" for _, c in copies), "dockerfile: COPY only, never ADD")
    check(not problems, f"dockerfile: all {len(copies)} COPY sources exist and are in the build context", "; ".join(problems))
    for stage, frm, srcs, dst in from_stage:
        if frm == "web":
            ok_src = all(re.fullmatch(r"/src/(tracker-js|dashboard)/dist/", s) for s in srcs)
            check(ok_src, f"dockerfile: {stage} takes {', '.join(srcs)} from the web stage's fresh build")

    # --- everything src/ embeds is in the build stage (rebuilt assets from the web stage)
    dests = []
    for c in byname["build"]["cmds"]:
        if c.cmd == "COPY":
            flags = dict(f.lstrip("-").split("=", 1) for f in c.flags if "=" in f)
            dests.append((c.value[-1].rstrip("/"), flags.get("from")))
    embedded = set()
    for p in glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True):
        for m in re.finditer(r'include_(?:bytes|str)!\(\s*"([^"]+)"\s*\)', read(p)):
            embedded.add(os.path.relpath(os.path.normpath(os.path.join(os.path.dirname(p), m.group(1))), ROOT))
    missing, stale = [], []
    for e in sorted(embedded):
        covering = [(d, f) for d, f in dests if e == d or e.startswith(d + "/")]
        if not covering:
            missing.append(e)
        elif "/dist/" in e and covering[-1][1] != "web":
            stale.append(e)
    check(embedded and not missing, f"dockerfile: all {len(embedded)} files src/ embeds (include_bytes!/include_str!) are copied into the build stage",
          f"missing: {missing}")
    check(not stale, "dockerfile: embedded dist/ files come from the web stage's build, not the committed copies", f"{stale}")
    for d in ("dashboard/dist/index.html", "dashboard/dist/app.js", "dashboard/dist/app.css"):
        if d not in embedded:
            note(f"src/ does not embed {d} yet (the built-in dashboard is being added); the image copies dashboard/dist/ already")

    # --- runtime stage
    rt = byname["runtime"]["cmds"]
    user = [c for c in rt if c.cmd == "USER"]
    u = user[-1].value[0] if user else "root"
    check(user and u.split(":")[0] not in ("0", "root") and re.fullmatch(r"\d+:\d+", u),
          f"dockerfile: runtime runs as a numeric non-root USER ({u})")
    uid = u.split(":")[0]
    runs = " ".join(" ".join(c.value) for c in rt if c.cmd == "RUN")
    check(f"--uid {uid}" in runs and f"install -d -o {uid} -g {u.split(':')[1]}" in runs and "/var/lib/footfall" in runs,
          f"dockerfile: user {uid} exists and owns /var/lib/footfall before VOLUME")
    check("ca-certificates" in runs and "rm -rf /var/lib/apt/lists" in runs, "dockerfile: runtime has ca-certificates, no apt lists")
    vol = [c for c in rt if c.cmd == "VOLUME"]
    check(vol and "/var/lib/footfall" in vol[0].value, "dockerfile: VOLUME /var/lib/footfall")
    check([c.value for c in rt if c.cmd == "EXPOSE"] == [("8080",)], "dockerfile: EXPOSE 8080")
    check([c.value for c in rt if c.cmd == "STOPSIGNAL"] == [("SIGTERM",)], "dockerfile: STOPSIGNAL SIGTERM")
    hc = [c for c in rt if c.cmd == "HEALTHCHECK"]
    check(hc and hc[-1].value[0] == "CMD" and list(hc[-1].value[1:]) == ["/usr/local/bin/footfall", "health", "--ready"],
          "dockerfile: HEALTHCHECK runs `footfall health --ready` (exec form)", f"{[h.original for h in hc]}")
    env = {}
    for c in rt:
        if c.cmd == "ENV":
            vals = list(c.value)
            for i in range(0, len(vals) - 1, 2):
                env[vals[i]] = vals[i + 1]
    check(env.get("FOOTFALL_LISTEN") == "0.0.0.0:8080" and env.get("FOOTFALL_DATA_DIR") == "/var/lib/footfall",
          "dockerfile: ENV FOOTFALL_LISTEN=0.0.0.0:8080, FOOTFALL_DATA_DIR=/var/lib/footfall", f"{env}")
    check_setting_names("Dockerfile ENV", env.keys(), known_settings())
    ep = [c for c in rt if c.cmd == "ENTRYPOINT"]
    cmd = [c for c in rt if c.cmd == "CMD"]
    check(ep and ep[-1].json and ep[-1].value == ("/usr/local/bin/footfall",) and cmd and cmd[-1].value == ("serve",),
          "dockerfile: ENTRYPOINT footfall, CMD serve (exec form: footfall is PID 1 and gets SIGTERM)")
    labels = " ".join(" ".join(c.value) for c in rt if c.cmd == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        check(f"org.opencontainers.image.{key}" in labels, f"dockerfile: OCI label org.opencontainers.image.{key}")
    lic = re.search(r'^license\s*=\s*"([^"]+)"', read(os.path.join(ROOT, "Cargo.toml")), re.M)
    check(lic and f"org.opencontainers.image.licenses {lic.group(1)}" in labels.replace("=", " ").replace('"', ""),
          f"dockerfile: licence label matches Cargo.toml ({lic.group(1) if lic else '?'})", labels[:300])

    # --- .dockerignore beside the Dockerfile
    check(os.path.isfile(os.path.join(DEPLOY, "Dockerfile.dockerignore")), "dockerfile: deploy/Dockerfile.dockerignore exists (BuildKit's per-Dockerfile ignore file)")
    for p in ("target", "fuzz/target", "node_modules", "tracker-js/node_modules", "dashboard/node_modules", "footfall-data",
              "deploy/.env", ".git", "tracker-js/test-results", "dashboard/test-results", "deploy/geoip/GeoLite2-City.mmdb"):
        check(ignored(p, pats), f"dockerfile: build context excludes {p}")
    for p in ("src/main.rs", "Cargo.lock", "schema", "tracker-js/src", "tracker-js/package-lock.json", "dashboard/src",
              "tracker-js/demo/index.html", "deploy/docker/cargo-stubs.sh"):
        check(not ignored(p, pats), f"dockerfile: build context keeps {p}")

    # --- the dependency-layer stub script, run against the real Cargo.toml
    tmp = tempfile.mkdtemp(prefix="footfall-stubs.")
    try:
        shutil.copy(os.path.join(ROOT, "Cargo.toml"), tmp)
        r = subprocess.run(["sh", os.path.join(DEPLOY, "docker", "cargo-stubs.sh"), tmp], capture_output=True, text=True, timeout=30)
        made = sorted(os.path.relpath(p, tmp) for p in glob.glob(os.path.join(tmp, "**", "*.rs"), recursive=True))
        cargo = read(os.path.join(ROOT, "Cargo.toml"))
        want = {"src/main.rs", "src/lib.rs"} | {f"benches/{n}.rs" for n in re.findall(
            r'^\[\[bench\]\]\s*\nname\s*=\s*"([^"]+)"', cargo, re.M)}
        check(r.returncode == 0 and want <= set(made), f"dockerfile: cargo-stubs.sh makes a stand-in for every target Cargo.toml declares ({', '.join(made)})",
              f"rc {r.returncode} {r.stderr.strip()} want {sorted(want)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    sc = shutil.which("shellcheck")
    scripts = [os.path.join(DEPLOY, "docker", "cargo-stubs.sh"), os.path.join(DEPLOY, "clickhouse", "initdb", "10-footfall-users.sh"),
               os.path.join(ROOT, "tests", "deploy", "check.sh")]
    if sc:
        r = subprocess.run([sc, "-S", "warning"] + scripts, capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"dockerfile: shellcheck (warnings and errors) clean: {', '.join(rel(s) for s in scripts)}", r.stdout[-1500:])
    else:
        skip("shellcheck is not installed: shell scripts not linted")


# ------------------------------------------------------------------ section: k8s

def k8s_docs():
    out = []
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        for d in yaml_docs(path):
            out.append((os.path.basename(path), d))
    return out


def label_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def section_k8s():
    try:
        import kubernetes_validate
    except ImportError:
        fail("k8s: kubernetes-validate is not installed (pip install kubernetes-validate)")
        return
    docs = k8s_docs()
    kust = [d for f, d in docs if f == "kustomization.yaml"][0]
    listed = kust.get("resources", [])
    files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml")))
    check(all(os.path.isfile(os.path.join(K8S, r)) for r in listed), f"k8s: kustomization.yaml's {len(listed)} resources exist")
    unlisted = [f for f in files if f not in listed and f not in ("kustomization.yaml", "secret.example.yaml")]
    check(not unlisted, "k8s: every manifest is listed in kustomization.yaml (only the Secret template is not)", f"{unlisted}")
    check("secret.example.yaml" not in listed, "k8s: the Secret template is not applied by kustomization.yaml")
    check("namespace" not in kust and all("namespace" not in d.get("metadata", {}) for f, d in docs if f != "kustomization.yaml"),
          "k8s: manifests are namespace-agnostic (no metadata.namespace, no kustomize namespace)")

    resources = [(f, d) for f, d in docs if f != "kustomization.yaml"]
    for version in K8S_VERSIONS:
        errs = []
        for f, d in resources:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except Exception as e:  # noqa: BLE001 (ValidationError, SchemaNotFoundError)
                errs.append(f"{f} {d.get('kind')}: {str(e).splitlines()[0][:300]}")
        check(not errs, f"k8s: {len(resources)} resources valid against the Kubernetes {version} OpenAPI schemas (strict: unknown fields are errors)",
              "; ".join(errs))
    # the validator is not vacuous: a misspelt field must be refused
    sts = [d for f, d in resources if d["kind"] == "StatefulSet"][0]
    broken = json.loads(json.dumps(sts))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbee"] = broken["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
    try:
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)
        fail("k8s: strict validation refuses a misspelt field (readinessProbee): it was accepted")
    except Exception:  # noqa: BLE001
        ok("k8s: strict validation refuses a misspelt field (readinessProbee), so the passes above mean something")

    by_kind = {}
    for f, d in resources:
        by_kind.setdefault(d["kind"], []).append(d)
    names = {(d["kind"], d["metadata"]["name"]) for _, d in resources}
    pod = sts["spec"]["template"]
    plabels = pod["metadata"]["labels"]
    pspec = pod["spec"]
    c = pspec["containers"][0]
    check(label_match(sts["spec"]["selector"]["matchLabels"], plabels), "k8s: StatefulSet selector matches its pod labels")
    svcs = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    gov = svcs.get(sts["spec"]["serviceName"])
    check(gov is not None and gov["spec"].get("clusterIP") == "None", f"k8s: StatefulSet serviceName {sts['spec']['serviceName']} is a headless Service")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for name, s in svcs.items():
        check(label_match(s["spec"]["selector"], plabels), f"k8s: Service {name} selects the footfall pods")
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            check(tp in ports or tp in ports.values(), f"k8s: Service {name} port {p['port']} targets a container port ({tp})")
    check(any(s["spec"].get("type", "ClusterIP") == "ClusterIP" and s["spec"].get("clusterIP") != "None" for s in svcs.values()),
          "k8s: a ClusterIP Service for ingest")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        check(label_match(pdb["spec"]["selector"]["matchLabels"], plabels), "k8s: PodDisruptionBudget selects the footfall pods")
        check(pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1, "k8s: PodDisruptionBudget allows one pod down")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        t = hpa["spec"]["scaleTargetRef"]
        check(t["kind"] == "StatefulSet" and ("StatefulSet", t["name"]) in names and t["apiVersion"] == "apps/v1",
              f"k8s: HorizontalPodAutoscaler targets the StatefulSet {t['name']}")
        check(hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu", "k8s: HPA autoscaling/v2 on CPU")
        check(hpa["spec"]["minReplicas"] >= 2, "k8s: HPA keeps at least 2 replicas (with the PDB, one can always be disrupted)")
        check("replicas" not in sts["spec"], "k8s: StatefulSet leaves replicas to the HPA (an apply would reset it otherwise)")
    refs = [("ConfigMap", e["configMapRef"]["name"]) for e in c.get("envFrom", []) if "configMapRef" in e] + \
           [("Secret", e["secretRef"]["name"]) for e in c.get("envFrom", []) if "secretRef" in e]
    check(len(refs) == 2 and all(r in names for r in refs), f"k8s: envFrom {refs} exist in the manifests")
    check(("ServiceAccount", pspec.get("serviceAccountName")) in names and pspec.get("automountServiceAccountToken") is False,
          "k8s: own ServiceAccount, no API token mounted")
    vols = {v["name"] for v in pspec.get("volumes", [])} | {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    check(all(m["name"] in vols for m in c.get("volumeMounts", [])), "k8s: every volumeMount has a volume or claim template")
    data_mount = [m for m in c["volumeMounts"] if m["mountPath"] == "/var/lib/footfall"]
    check(data_mount and data_mount[0]["name"] in {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]},
          "k8s: /var/lib/footfall (the spool) is on a per-pod PersistentVolumeClaim")
    check(sts["spec"].get("persistentVolumeClaimRetentionPolicy", {}).get("whenScaled") == "Retain",
          "k8s: claims are kept on scale-down (they may hold undelivered events)")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        p = c.get(probe, {}).get("httpGet", {})
        check(p.get("path") == path and (p.get("port") in ports or p.get("port") in ports.values()),
              f"k8s: {probe} GET {path} on a container port ({p.get('port')})")
    cm = [d for d in by_kind["ConfigMap"] if d["metadata"]["name"] == refs[0][1]][0]["data"]
    secret = [d for d in by_kind["Secret"] if d["metadata"]["name"] == refs[1][1]][0]
    flush = int(cm.get("FOOTFALL_SHUTDOWN_FLUSH_SECS", 10))
    pre = c.get("lifecycle", {}).get("preStop", {})
    pre_s = pre.get("sleep", {}).get("seconds", 0) if "sleep" in pre else int(re.sub(r"\D", "", " ".join(pre.get("exec", {}).get("command", ["0"]))) or 0)
    grace = pspec.get("terminationGracePeriodSeconds", 30)
    check(pre_s >= 3, f"k8s: preStop pauses {pre_s}s so endpoints are removed before SIGTERM")
    check(grace >= pre_s + flush + 10, f"k8s: terminationGracePeriodSeconds {grace} > preStop {pre_s}s + FOOTFALL_SHUTDOWN_FLUSH_SECS {flush}s + 10s")
    psc, csc = pspec.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "k8s: pod runAsNonRoot, seccomp RuntimeDefault")
    check(csc.get("readOnlyRootFilesystem") and csc.get("allowPrivilegeEscalation") is False and csc.get("capabilities", {}).get("drop") == ["ALL"],
          "k8s: container read-only root, no privilege escalation, all capabilities dropped")
    df_user = re.search(r"^USER (\d+):(\d+)", read(os.path.join(DEPLOY, "Dockerfile")), re.M)
    check(df_user and str(psc.get("runAsUser")) == df_user.group(1) and str(psc.get("fsGroup")) == df_user.group(2),
          f"k8s: runAsUser/fsGroup match the image's USER ({df_user.group(0) if df_user else '?'})")
    res = c.get("resources", {})
    check(res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory"),
          "k8s: CPU and memory requests, memory limit (the HPA needs the CPU request)")
    aff = pspec.get("affinity", {}).get("podAntiAffinity", {}).get("preferredDuringSchedulingIgnoredDuringExecution", [])
    check(aff and label_match(aff[0]["podAffinityTerm"]["labelSelector"]["matchLabels"], plabels), "k8s: preferred pod anti-affinity between footfall pods")
    ann = pod["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and int(ann.get("prometheus.io/port", 0)) in ports.values(), "k8s: Prometheus scrape annotations")
    check(cm.get("FOOTFALL_SALT_STORE") == "clickhouse", "k8s: FOOTFALL_SALT_STORE=clickhouse (replicas share the daily salt)")
    check(cm.get("FOOTFALL_LISTEN", "").endswith(":" + str(ports.get("http"))), "k8s: FOOTFALL_LISTEN port is the container port")
    check(cm.get("FOOTFALL_DATA_DIR") == data_mount[0]["mountPath"], "k8s: FOOTFALL_DATA_DIR is the claim's mount path")
    sdata = secret.get("stringData", {})
    check(set(sdata) >= {"FOOTFALL_SECRET", "FOOTFALL_CLICKHOUSE_PASSWORD", "FOOTFALL_CLICKHOUSE_ADMIN_PASSWORD"}
          and all(v.startswith("PLACEHOLDER") for v in sdata.values()),
          "k8s: the Secret template holds only PLACEHOLDER values, for FOOTFALL_SECRET and the ClickHouse passwords")
    check(not set(sdata) & set(cm), "k8s: no setting is both in the ConfigMap and the Secret")
    known = known_settings()
    check_setting_names("k8s ConfigMap+Secret", list(cm) + list(sdata), known)
    img = c["image"]
    check(re.fullmatch(r"[\w./-]+:[\w.-]+", img) and not img.endswith(":latest"), f"k8s: image pinned ({img})")
    kimg = kust.get("images", [{}])[0]
    check(kimg.get("name") == img.split(":")[0], "k8s: kustomization's images entry names the container image")

    # --- Altinity example
    chi_path = os.path.join(K8S, "clickhouse", "altinity-chi.yaml")
    chis = {d["kind"]: d for d in yaml_docs(chi_path)}
    check(set(chis) == {"ClickHouseKeeperInstallation", "ClickHouseInstallation"}, "k8s/clickhouse: Keeper and ClickHouse installations")
    chi, chk = chis["ClickHouseInstallation"], chis["ClickHouseKeeperInstallation"]
    cl = chi["spec"]["configuration"]["clusters"][0]
    check(cl["layout"].get("shardsCount") == 2 and cl["layout"].get("replicasCount") == 2, "k8s/clickhouse: 2 shards x 2 replicas")
    check(chk["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"] == 3, "k8s/clickhouse: 3 Keeper nodes")
    zk = chi["spec"]["configuration"]["zookeeper"]["nodes"][0]
    check(zk["host"] == "keeper-" + chk["metadata"]["name"] and zk["port"] == 2181,
          f"k8s/clickhouse: ClickHouse uses the Keeper's Service (keeper-{chk['metadata']['name']}:2181)")
    cm_text = read(os.path.join(K8S, "configmap.yaml"))
    m = re.search(r"#\s*FOOTFALL_CLICKHOUSE_CLUSTER:\s*(\S+)", cm_text)
    check(m and m.group(1) == cl["name"], f"k8s/clickhouse: FOOTFALL_CLICKHOUSE_CLUSTER in configmap.yaml names the cluster ({cl['name']})")
    check(f"http://clickhouse-{chi['metadata']['name']}:8123" in read(os.path.join(K8S, "README.md")),
          "k8s/clickhouse: README gives the installation's Service as FOOTFALL_CLICKHOUSE_URL")
    compose_ch = yaml_docs(os.path.join(DEPLOY, "compose.yaml"))[0]["services"]["clickhouse"]["image"].split(":")[1]
    imgs = re.findall(r"image:\s*(\S+)", read(chi_path))
    check(imgs and all(i.split(":")[1] == compose_ch for i in imgs), f"k8s/clickhouse: images pinned to compose's ClickHouse version {compose_ch}")
    users = chi["spec"]["configuration"]["users"]
    check(users.get("footfall_dba/networks/ip") == ["127.0.0.1", "::1"] and "footfall_dba/password" not in users,
          "k8s/clickhouse: the administrator is loopback-only, its password only as a SHA-256 from a Secret")
    check("<replicated>" in chi["spec"]["configuration"]["files"]["config.d/footfall-replicated-access.xml"],
          "k8s/clickhouse: SQL users and grants are replicated through Keeper")
    try:
        kubernetes_validate.validate(chi, K8S_VERSIONS[0], strict=True)
        fail("k8s/clickhouse: expected no schema for ClickHouseInstallation in kubernetes-validate")
    except Exception:  # noqa: BLE001
        skip("k8s/clickhouse: altinity-chi.yaml not validated against the operator's CRD schema (not shipped offline; structure checked above)")
    tool = shutil.which("kustomize")
    cmd = [tool, "build", K8S] if tool else ([shutil.which("kubectl"), "kustomize", K8S] if shutil.which("kubectl") else None)
    if cmd:
        import yaml
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check(r.returncode == 0, f"k8s: `{' '.join(os.path.basename(c) for c in cmd[:2])}` renders deploy/k8s offline", r.stderr[-500:]):
            rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
            kinds = sorted(d["kind"] for d in rendered)
            check(kinds == sorted(d["kind"] for _, d in resources if _ != "secret.example.yaml"),
                  f"k8s: the rendered kustomization has exactly the listed resources ({', '.join(kinds)}), no Secret")
            errs = []
            for d in rendered:
                try:
                    kubernetes_validate.validate(d, K8S_VERSIONS[0], strict=True)
                except Exception as e:  # noqa: BLE001
                    errs.append(f"{d.get('kind')}: {str(e).splitlines()[0][:300]}")
            check(not errs, f"k8s: the rendered output is valid against the Kubernetes {K8S_VERSIONS[0]} schemas (strict)", "; ".join(errs))
            rs = [d for d in rendered if d["kind"] == "StatefulSet"][0]
            want = kust["images"][0].get("newName", kust["images"][0]["name"]) + ":" + kust["images"][0]["newTag"]
            check(rs["spec"]["template"]["spec"]["containers"][0]["image"] == want, f"k8s: the rendered StatefulSet runs {want}")
            check(all(d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "footfall" for d in rendered),
                  "k8s: every rendered resource is labelled app.kubernetes.io/part-of=footfall")
    else:
        skip("k8s: `kustomize build` not run (neither kustomize nor kubectl is installed); the kustomization was checked by hand above")


# ------------------------------------------------------------------ section: systemd

REQUIRED_UNIT = {
    "Type": "simple", "User": "footfall", "StateDirectory": "footfall", "KillSignal": "SIGTERM", "Restart": "on-failure",
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
    "ProtectClock": "yes", "ProtectHostname": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native", "CapabilityBoundingSet": "", "UMask": "0077",
    "ReadWritePaths": "/var/lib/footfall",
}


def parse_unit(text):
    out, section = {}, None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        if s.startswith("["):
            section = s.strip("[]")
            continue
        k, _, v = s.partition("=")
        out.setdefault((section, k.strip()), []).append(v.strip())
    return out


def section_systemd():
    path = os.path.join(DEPLOY, "systemd", "footfall.service")
    unit = parse_unit(read(path))
    svc = {k: v for (s, k), v in unit.items() if s == "Service"}
    bad = [f"{k}={want!r} (got {svc.get(k)})" for k, want in REQUIRED_UNIT.items() if want not in svc.get(k, [])]
    check(not bad, f"systemd: footfall.service has all {len(REQUIRED_UNIT)} required settings", "; ".join(bad))
    check("@system-service" in svc.get("SystemCallFilter", []), "systemd: SystemCallFilter=@system-service")
    check(svc.get("ExecStart") == ["/usr/local/bin/footfall --config /etc/footfall/footfall.toml serve"],
          "systemd: ExecStart=/usr/local/bin/footfall --config /etc/footfall/footfall.toml serve")
    stop = duration_secs(svc.get("TimeoutStopSec", ["90s"])[-1])
    toml = read(os.path.join(ROOT, "footfall.example.toml"))
    m = re.search(r"^shutdown_flush_secs\s*=\s*(\d+)", toml, re.M)
    flush = int(m.group(1)) if m else 10
    check(stop >= flush + 15, f"systemd: TimeoutStopSec ({stop:g}s) exceeds shutdown_flush_secs ({flush}s) by 15s or more")
    envf = os.path.join(DEPLOY, "systemd", "footfall.env.example")
    env, _ = parse_env_file(envf)
    check_setting_names("systemd footfall.env.example", env.keys(), known_settings())
    check(any(v.startswith("-/etc/footfall/footfall.env") for v in svc.get("EnvironmentFile", [])), "systemd: secrets from the optional EnvironmentFile /etc/footfall/footfall.env")
    sa = shutil.which("systemd-analyze")
    if not sa:
        skip("systemd: systemd-analyze is not installed: only the parse check above ran")
        return
    tmp = tempfile.mkdtemp(prefix="footfall-systemd.")
    try:
        # verify wants ExecStart's binary to exist: a temp stand-in at a temp path
        stand_in = os.path.join(tmp, "footfall")
        os.symlink(shutil.which("true") or "/bin/true", stand_in)
        unit_copy = os.path.join(tmp, "footfall.service")
        with open(unit_copy, "w") as f:
            f.write(read(path).replace("/usr/local/bin/footfall", stand_in))
        r = subprocess.run([sa, "verify", unit_copy], capture_output=True, text=True, timeout=60)
        msgs = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
        check(r.returncode == 0 and not msgs, "systemd: `systemd-analyze verify` accepts footfall.service (ExecStart pointed at a stand-in)",
              " | ".join(msgs)[-800:])
        r = subprocess.run([sa, "security", "--offline=true", "--no-pager", unit_copy], capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) (\w+)", r.stdout)
        if m:
            check(float(m.group(1)) <= 2.5, f"systemd: `systemd-analyze security --offline` exposure {m.group(1)} {m.group(2)} (at most 2.5)")
        else:
            skip(f"systemd: `systemd-analyze security --offline` unavailable here: {(r.stderr or r.stdout).strip()[:200]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sysusers = read(os.path.join(DEPLOY, "systemd", "footfall.sysusers"))
    check(re.search(r"^u footfall - .* /var/lib/footfall", sysusers, re.M), "systemd: sysusers.d entry creates the footfall user")


# ------------------------------------------------------------------ section: clickhouse18

def ch_server_cmd():
    for c in ("clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"):
        p = shutil.which(c) or (c if os.path.isfile(c) and os.access(c, os.X_OK) else None)
        if p:
            return [p]
    p = shutil.which("clickhouse")
    return [p, "server"] if p else None


def http_query(port, sql, user=None, password=None, source=None, timeout=10):
    import base64
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0) if source else None)
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
    try:
        conn.request("POST", "/", body=sql.encode(), headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)
    finally:
        conn.close()


def section_clickhouse18():
    server = ch_server_cmd()
    if not server:
        fail("clickhouse18: no ClickHouse server (clickhouse-server or clickhouse) found; check.sh installs Debian's clickhouse-server")
        return
    compose = yaml_docs(os.path.join(DEPLOY, "compose.yaml"))[0]["services"]["clickhouse"]
    dba = compose["environment"]["CLICKHOUSE_USER"]
    mounts = [v.split(":") for v in compose["volumes"]]
    tmp = tempfile.mkdtemp(prefix="footfall-deploy-ch18.")
    proc = None
    try:
        for d in ("data", "tmp", "user_files", "format_schemas", "log", "config.d", "users.d"):
            os.makedirs(os.path.join(tmp, d))
        # The files compose mounts into config.d/ and users.d/, under the names it mounts them as.
        placed = []
        for m in mounts:
            for sub in ("config.d", "users.d"):
                prefix = f"/etc/clickhouse-server/{sub}/"
                if m[1].startswith(prefix):
                    shutil.copy(os.path.join(DEPLOY, m[0]), os.path.join(tmp, sub, m[1][len(prefix):]))
                    placed.append(f"{sub}/{m[1][len(prefix):]}")
        note(f"clickhouse18: loading {', '.join(placed)} (as compose mounts them)")
        # Stand-in of what the image's entrypoint writes for CLICKHOUSE_USER/PASSWORD/ACCESS_MANAGEMENT.
        dba_pw, control_pw = secrets.token_hex(12), secrets.token_hex(12)
        with open(os.path.join(tmp, "users.d", "default-user.xml"), "w") as f:
            f.write(f"""<clickhouse><users><default remove="remove"></default>
  <{dba}><profile>default</profile><networks><ip>::/0</ip></networks><password>{dba_pw}</password>
  <quota>default</quota><access_management>1</access_management></{dba}></users></clickhouse>""")
        # The stock users.xml (a passwordless default user) plus a control user open to ::/0.
        with open(os.path.join(tmp, "users.xml"), "w") as f:
            f.write(f"""<clickhouse><profiles><default/></profiles><quotas><default/></quotas><users>
  <default><password></password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default>
  <control><password>{control_pw}</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></control>
</users></clickhouse>""")
        http_port, tcp_port, mysql_port, inter_port = free_ports(4)
        # A stock-like config.xml: trace level to log files, every listener on; the override must change that.
        with open(os.path.join(tmp, "config.xml"), "w") as f:
            f.write(f"""<?xml version="1.0"?>
<clickhouse>
  <logger><level>trace</level><log>{tmp}/log/server.log</log><errorlog>{tmp}/log/server.err.log</errorlog><size>10M</size><count>2</count></logger>
  <http_port>{http_port}</http_port><tcp_port>{tcp_port}</tcp_port>
  <mysql_port>{mysql_port}</mysql_port><interserver_http_port>{inter_port}</interserver_http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{tmp}/data/</path><tmp_path>{tmp}/tmp/</tmp_path><user_files_path>{tmp}/user_files/</user_files_path>
  <format_schema_path>{tmp}/format_schemas/</format_schema_path>
  <users_config>{tmp}/users.xml</users_config>
  <default_profile>default</default_profile><default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size><uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries><mlock_executable>false</mlock_executable>
  <query_log><database>system</database><table>query_log</table><flush_interval_milliseconds>7500</flush_interval_milliseconds></query_log>
</clickhouse>""")
        out = open(os.path.join(tmp, "console.log"), "wb")
        proc = subprocess.Popen(server + [f"--config-file={tmp}/config.xml"], cwd=tmp, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        t0, up = time.time(), False
        while time.time() - t0 < 30:
            if proc.poll() is not None:
                break
            st, _ = http_query(http_port, "SELECT 1", dba, dba_pw, timeout=2)
            if st == 200:
                up = True
                break
            time.sleep(0.2)
        console = read(os.path.join(tmp, "console.log")) if os.path.exists(os.path.join(tmp, "console.log")) else ""
        if not check(up, f"clickhouse18: a real server ({' '.join(server)}) starts with footfall's config.d and users.d files and answers SELECT 1",
                     console[-1500:]):
            return
        st, version = http_query(http_port, "SELECT version()", dba, dba_pw)
        note(f"clickhouse18: ClickHouse {version.strip()} on 127.0.0.1:{http_port}")

        # --- the logger override: console, information, no log files
        time.sleep(0.5)
        console = read(os.path.join(tmp, "console.log"))
        levels = set(re.findall(r"<(Trace|Debug|Information|Warning|Error)>", console))
        check("Information" in levels and not levels & {"Trace", "Debug"},
              f"clickhouse18: footfall.xml's logger is in effect: the console shows <Information>, no <Trace>/<Debug> (base config said trace) {sorted(levels)}")
        check(not os.path.exists(os.path.join(tmp, "log", "server.log")), "clickhouse18: footfall.xml removes the log files (console only)")
        # --- the merged configuration the server used
        pre = sorted(glob.glob(os.path.join(tmp, "**", "*config*preprocessed*.xml"), recursive=True) +
                     glob.glob(os.path.join(tmp, "**", "preprocessed_configs", "config.xml"), recursive=True))
        if pre:
            root = ET.parse(pre[0]).getroot()
            check(root.findtext("logger/level") == "information" and root.find("logger/log") is None and root.findtext("logger/console") == "1",
                  f"clickhouse18: merged config ({rel(pre[0]) if pre[0].startswith(ROOT) else os.path.basename(pre[0])}): logger level information, console, no <log>")
            check(root.find("mysql_port") is None and root.find("interserver_http_port") is None,
                  "clickhouse18: merged config has no mysql_port or interserver_http_port (removed by footfall.xml)")
            check(root.findtext("query_log/ttl", "").startswith("event_date + INTERVAL 7 DAY"), "clickhouse18: merged config has the query_log TTL (18.16 itself ignores it)")
            aci = root.find("access_control_improvements")
            check(aci is not None and aci.findtext("select_from_system_db_requires_grant") == "true",
                  "clickhouse18: access-control.xml merges (18.16 loads it without error)")
            skip("clickhouse18: access_control_improvements only take effect on current ClickHouse (20.x+): 18.16 ignores them, and chdb does not apply server settings, so their effect is not tested here")
        else:
            fail(f"clickhouse18: no preprocessed config found under {tmp}")
        # --- users.d: the administrator is confined to loopback; the stock default user is gone
        st, body = http_query(http_port, "SELECT 1", dba, dba_pw, source="127.0.0.2")
        check(st != 200 and re.search(r"not allowed|IP address|Authentication failed", body),
              f"clickhouse18: {dba} is refused from 127.0.0.2 (users.d/zz-footfall-dba.xml replaced the entrypoint's ::/0)", f"HTTP {st}: {body[:200]}")
        st, body = http_query(http_port, "SELECT 1", "control", control_pw, source="127.0.0.2")
        check(st == 200, "clickhouse18: control user with ::/0 is let in from 127.0.0.2 (so the refusal above is the networks rule)", f"HTTP {st}: {body[:200]}")
        st, body = http_query(http_port, "SELECT 1", dba, dba_pw)
        check(st == 200, f"clickhouse18: {dba} logs in from 127.0.0.1", f"HTTP {st}: {body[:200]}")
        st, body = http_query(http_port, "SELECT 1", "default", "")
        check(st != 200 and "Unknown user default" in body, "clickhouse18: the passwordless default user is removed (stand-in of the entrypoint's default-user.xml)",
              f"HTTP {st}: {body[:200]}")
    finally:
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc:
            note("clickhouse18: server stopped")
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ section: initdb (chdb)

def split_statements(sql):
    out, cur = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        cur.append(line)
        if line.rstrip().endswith(";"):
            body = "\n".join(cur).strip().rstrip(";").strip()
            if body:
                out.append(body)
            cur = []
    if "\n".join(cur).strip():
        out.append("\n".join(cur).strip())
    return out


CHDB_PROBE = r"""
import json, os, sys
from chdb import session
stmts = json.load(open(sys.argv[1]))
tmp = os.path.dirname(sys.argv[1])
# `default` with access management (as the compose administrator has), so only the server's
# abilities, not privileges, decide what runs
with open(os.path.join(tmp, "users.xml"), "w") as f:
    f.write("<clickhouse><profiles><default/></profiles><quotas><default/></quotas><users><default><password></password>"
            "<networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota>"
            "<access_management>1</access_management></default></users></clickhouse>")
with open(os.path.join(tmp, "config.xml"), "w") as f:
    f.write("<clickhouse><users_config>" + os.path.join(tmp, "users.xml") + "</users_config></clickhouse>")
s = session.Session("file:" + os.path.join(tmp, "data") + "?config-file=" + os.path.join(tmp, "config.xml"))
res = {"version": s.query("SELECT version()", "TSV").data().strip(), "exec": [], "explain": [], "format": []}
for st in stmts:
    try:
        s.query(st, "TSV"); res["exec"].append([st, None])
    except Exception as e:
        res["exec"].append([st, str(e).splitlines()[0]])
for st in stmts:
    try:
        s.query("EXPLAIN AST " + st, "TSV"); res["explain"].append([st, None])
    except Exception as e:
        res["explain"].append([st, str(e).splitlines()[0]])
    try:
        res["format"].append([st, s.query("SELECT formatQuery(" + "'" + st.replace("\\", "\\\\").replace("'", "\\'") + "')", "TSVRaw").data().strip()])
    except Exception as e:
        res["format"].append([st, "ERROR " + str(e).splitlines()[0]])
print("RESULT " + json.dumps(res))
"""


def section_initdb():
    script = os.path.join(DEPLOY, "clickhouse", "initdb", "10-footfall-users.sh")
    pws = {k: secrets.token_hex(16) for k in ("ingest", "admin", "analyst")}
    env = dict(os.environ, FOOTFALL_GRANTS_SQL=os.path.join(DEPLOY, "clickhouse", "grants.sql"),
               FOOTFALL_CLICKHOUSE_PASSWORD=pws["ingest"], FOOTFALL_CLICKHOUSE_ADMIN_PASSWORD=pws["admin"],
               FOOTFALL_CLICKHOUSE_ANALYST_PASSWORD=pws["analyst"], FOOTFALL_CLICKHOUSE_CLIENT_NETWORKS="172.30.80.0/24")
    r = subprocess.run(["bash", script, "--print-sql"], env=env, capture_output=True, text=True, timeout=30)
    if not check(r.returncode == 0, "initdb: 10-footfall-users.sh --print-sql generates the SQL", r.stderr.strip()):
        return
    sql = r.stdout
    check("CHANGE_ME" not in sql, "initdb: no CHANGE_ME placeholder left")
    check(not any(p in sql for p in pws.values()), "initdb: no password in the SQL, only SHA-256 hashes")
    for user, key in (("footfall_ingest", "ingest"), ("footfall_admin", "admin"), ("footfall_analyst", "analyst")):
        h = hashlib.sha256(pws[key].encode()).hexdigest()
        check(re.search(rf"CREATE USER IF NOT EXISTS {user} IDENTIFIED WITH sha256_hash BY '{h}' HOST IP '172\.30\.80\.0/24' DEFAULT ROLE {user}_role;", sql),
              f"initdb: {user} gets the SHA-256 of its password and HOST IP '172.30.80.0/24'")
    check("HOST IP '127.0.0.1'" not in sql, "initdb: the loopback-only HOST of grants.sql is replaced everywhere")
    grants = split_statements(read(os.path.join(DEPLOY, "clickhouse", "grants.sql")))
    stmts = split_statements(sql)
    check(len(stmts) == len(grants), f"initdb: same {len(grants)} statements as grants.sql, in the same order")
    # refusals
    for label, extra in (("a short password", {"FOOTFALL_CLICKHOUSE_PASSWORD": "short"}),
                         ("a missing password", {"FOOTFALL_CLICKHOUSE_ANALYST_PASSWORD": ""}),
                         ("a network that is not an address", {"FOOTFALL_CLICKHOUSE_CLIENT_NETWORKS": "10.0.0.0/8'; DROP USER x; --"})):
        r2 = subprocess.run(["bash", script, "--print-sql"], env=dict(env, **extra), capture_output=True, text=True, timeout=30)
        check(r2.returncode != 0 and not r2.stdout, f"initdb: refuses {label}", f"rc {r2.returncode}")
    tmp = tempfile.mkdtemp(prefix="footfall-initdb-pw.")
    try:
        pwfile = os.path.join(tmp, "pw")
        with open(pwfile, "w") as f:
            f.write(pws["admin"] + "\n")
        e2 = {k: v for k, v in env.items() if k != "FOOTFALL_CLICKHOUSE_ADMIN_PASSWORD"}
        e2["FOOTFALL_CLICKHOUSE_ADMIN_PASSWORD_FILE"] = pwfile
        r3 = subprocess.run(["bash", script, "--print-sql"], env=e2, capture_output=True, text=True, timeout=30)
        check(r3.returncode == 0 and r3.stdout == sql, "initdb: a password from a *_FILE (Docker secret) gives the same SQL")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    try:
        import chdb  # noqa: F401
    except ImportError:
        fail("initdb: chdb is not installed (pip install chdb-core)")
        return
    tmp = tempfile.mkdtemp(prefix="footfall-initdb-chdb.")
    try:
        sp = os.path.join(tmp, "stmts.json")
        with open(sp, "w") as f:
            json.dump(stmts, f)
        r = subprocess.run([sys.executable, "-c", CHDB_PROBE, sp], cwd=tmp, capture_output=True, text=True, timeout=120)
        line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
        if not check(r.returncode == 0 and line, "initdb: chdb ran the statements", (r.stderr or r.stdout)[-800:]):
            return
        res = json.loads(line[0][7:])
        ver = res["version"]
        executed = [st for st, err in res["exec"] if err is None]
        storage = [err for st, err in res["exec"] if err and "ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND" in err]
        if len(executed) == len(stmts):
            ok(f"initdb: ClickHouse {ver} (chdb) executed all {len(stmts)} statements")
        else:
            skip(f"initdb: ClickHouse {ver} (chdb) cannot execute them: it has no writable access storage "
                 f"({len(storage)} statements refused with ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND, the rest need those roles); "
                 "checking that 26.x parses them (EXPLAIN AST) instead")
            other = [f"{st[:60]}: {err}" for st, err in res["exec"] if err and "ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND" not in err
                     and "UNKNOWN_ROLE" not in err and "UNKNOWN_USER" not in err]
            check(not other, "initdb: chdb refused them only for want of access storage (no syntax or privilege-name errors)", "; ".join(other))
        bad = [f"{st[:60]}: {err}" for st, err in res["explain"] if err]
        check(not bad, f"initdb: all {len(stmts)} generated statements parse on ClickHouse {ver} (EXPLAIN AST)", "; ".join(bad))
        fmt = {st: out for st, out in res["format"]}
        for st, out in fmt.items():
            if st.startswith("CREATE USER"):
                user = st.split()[5]
                check("IDENTIFIED WITH sha256_hash BY '" in out and "IP '172.30.80.0/24'" in out,
                      f"initdb: 26.x reads {user}'s CREATE USER with its sha256_hash and HOST IP (formatQuery)", out[:200])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ section: node (the image's web stage)

def section_node():
    npm = shutil.which("npm")
    if not npm:
        skip("node: npm is not installed: the web stage's commands were not run")
        return
    pats = dockerignore_patterns()
    tmp = tempfile.mkdtemp(prefix="footfall-web-stage.")
    try:
        for d in ("tracker-js", "dashboard"):
            src = os.path.join(ROOT, d)
            if not os.path.isfile(os.path.join(src, "package-lock.json")):
                fail(f"node: {d}/package-lock.json is missing (npm ci needs it)")
                continue
            dst = os.path.join(tmp, d)
            # only what the build context holds (Dockerfile.dockerignore applied)
            for dirpath, dirnames, filenames in os.walk(src):
                r = os.path.relpath(dirpath, ROOT)
                dirnames[:] = [n for n in dirnames if not ignored(os.path.join(r, n), pats)]
                for n in filenames:
                    if not ignored(os.path.join(r, n), pats):
                        os.makedirs(os.path.join(tmp, r), exist_ok=True)
                        shutil.copy2(os.path.join(dirpath, n), os.path.join(tmp, r, n))
            shutil.rmtree(os.path.join(dst, "dist"), ignore_errors=True)
            t0 = time.time()
            r1 = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=dst, capture_output=True, text=True, timeout=240)
            if not check(r1.returncode == 0, f"node: `npm ci` in {d}/ on the build context's files ({time.time() - t0:.0f}s)", (r1.stderr or r1.stdout)[-800:]):
                continue
            r2 = subprocess.run([npm, "run", "build"], cwd=dst, capture_output=True, text=True, timeout=120)
            built = sorted(os.listdir(os.path.join(dst, "dist"))) if os.path.isdir(os.path.join(dst, "dist")) else []
            if not check(r2.returncode == 0 and built, f"node: `npm run build` in {d}/ rebuilds dist/ ({', '.join(built)})", (r2.stderr or r2.stdout)[-800:]):
                continue
            committed = os.path.join(src, "dist")
            differ = [n for n in built if not os.path.exists(os.path.join(committed, n))
                      or open(os.path.join(committed, n), "rb").read() != open(os.path.join(dst, "dist", n), "rb").read()]
            if differ:
                note(f"node: the fresh {d}/dist differs from the committed one in {differ}: the image embeds the fresh build (run npm run build in {d}/ and commit)")
            else:
                ok(f"node: the fresh {d}/dist is byte-identical to the committed one")
        embedded = set()
        for p in glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True):
            for m in re.finditer(r'include_bytes!\(\s*"([^"]+/dist/[^"]+)"\s*\)', read(p)):
                embedded.add(os.path.relpath(os.path.normpath(os.path.join(os.path.dirname(p), m.group(1))), ROOT))
        missing = [e for e in sorted(embedded) if not os.path.exists(os.path.join(tmp, e))]
        check(not missing, f"node: the web stage produces all {len(embedded)} dist files src/ embeds", f"missing: {missing}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ section: binary (footfall with each environment)

def http_get(port, path, timeout=3):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)


def run_footfall(binary, label, env, args, grace):
    """Starts `footfall ARGS serve` with ENV on a free port and a temp data dir; checks /healthz,
    /readyz, `footfall health`, and that SIGTERM stops it within GRACE seconds."""
    tmp = tempfile.mkdtemp(prefix="footfall-deploy-bin.")
    port, closed = free_ports(2)
    env = {k: v for k, v in env.items() if v is not None}
    env.update(FOOTFALL_LISTEN=f"127.0.0.1:{port}", FOOTFALL_DATA_DIR=os.path.join(tmp, "data"),
               FOOTFALL_CLICKHOUSE_URL=f"http://127.0.0.1:{closed}", FOOTFALL_GEOIP_CITY="", FOOTFALL_GEOIP_ASN="")
    env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    log = open(os.path.join(tmp, "footfall.log"), "wb")
    proc = subprocess.Popen([binary] + args + ["serve"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0, st = time.time(), 0
        while time.time() - t0 < 20 and proc.poll() is None:
            st, _ = http_get(port, "/healthz", 1)
            if st == 200:
                break
            time.sleep(0.2)
        logtext = read(os.path.join(tmp, "footfall.log"))
        if not check(st == 200, f"binary: footfall starts with the {label} environment and /healthz answers 200", logtext[-800:]):
            return
        st, body = http_get(port, "/readyz")
        check(st == 200, f"binary: /readyz 200 with the {label} environment while ClickHouse is unreachable (the spool takes events)", f"{st} {body[:300]}")
        hr = subprocess.run([binary, "health", "--help"], capture_output=True, text=True, timeout=10)
        if hr.returncode == 0:
            for listen in (f"127.0.0.1:{port}", f"0.0.0.0:{port}"):
                h = subprocess.run([binary] + args + ["health", "--ready"], env=dict(env, FOOTFALL_LISTEN=listen), capture_output=True, text=True, timeout=15)
                check(h.returncode == 0, f"binary: `footfall health --ready` exits 0 against the running collector (FOOTFALL_LISTEN={listen.split(':')[0]}:…, {label})",
                      (h.stderr or h.stdout)[-300:])
            h = subprocess.run([binary] + args + ["health"], env=dict(env, FOOTFALL_LISTEN=f"127.0.0.1:{closed}"), capture_output=True, text=True, timeout=15)
            check(h.returncode != 0, f"binary: `footfall health` exits non-zero when nothing listens ({label})")
        else:
            skip(f"binary: this footfall has no `health` command yet (the image's HEALTHCHECK needs it) ({label})")
        t0 = time.time()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
            check(True, f"binary: SIGTERM stops it in {time.time() - t0:.1f}s, within the {grace:g}s grace period ({label})")
        except subprocess.TimeoutExpired:
            fail(f"binary: SIGTERM did not stop it within the {grace:g}s grace period ({label})")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


def section_binary():
    src = os.path.join(ROOT, "target", "release", "footfall")
    if not os.access(src, os.X_OK):
        skip("binary: target/release/footfall is not built: the environments were not tried on the real binary")
        return
    tmp = tempfile.mkdtemp(prefix="footfall-deploy-binary.")
    try:
        binary = os.path.join(tmp, "footfall")
        shutil.copy2(src, binary)  # a private copy: the build may replace the original meanwhile
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
        # compose: the footfall service's environment with .env.example filled in
        _, _, doc, _, _ = compose_resolved()
        svc = doc["services"]["footfall"]
        run_footfall(binary, "compose", dict(base, **{k: str(v) for k, v in svc["environment"].items()}), [],
                     duration_secs(svc["stop_grace_period"]))
        # Kubernetes: ConfigMap + the Secret template's keys (with made-up values)
        docs = k8s_docs()
        cm = [d for f, d in docs if d.get("kind") == "ConfigMap"][0]["data"]
        sec = {k: secrets.token_hex(20) for k in [d for f, d in docs if d.get("kind") == "Secret"][0]["stringData"]}
        sts = [d for f, d in docs if d.get("kind") == "StatefulSet"][0]["spec"]["template"]["spec"]
        run_footfall(binary, "Kubernetes", dict(base, **cm, **sec), [], sts["terminationGracePeriodSeconds"])
        # systemd: footfall.example.toml as /etc/footfall/footfall.toml + footfall.env.example filled in
        env, _ = parse_env_file(os.path.join(DEPLOY, "systemd", "footfall.env.example"))
        env = {k: (v or secrets.token_hex(20)) for k, v in env.items()}
        unit = parse_unit(read(os.path.join(DEPLOY, "systemd", "footfall.service")))
        for e in unit.get(("Service", "Environment"), []):
            k, _, v = e.partition("=")
            env[k] = v
        run_footfall(binary, "systemd", dict(base, **env), ["--config", os.path.join(ROOT, "footfall.example.toml")],
                     duration_secs(unit[("Service", "TimeoutStopSec")][-1]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SECTIONS = {"yaml": section_yaml, "compose": section_compose, "dockerfile": section_dockerfile, "k8s": section_k8s,
            "systemd": section_systemd, "clickhouse18": section_clickhouse18, "initdb": section_initdb,
            "node": section_node, "binary": section_binary}


def main(argv):
    names = argv[1:] or list(SECTIONS)
    for name in names:
        t0 = time.time()
        print(f"== {name}", flush=True)
        try:
            SECTIONS[name]()
        except Exception as e:  # noqa: BLE001: a crash in one section is one failure, the rest still run
            fail(f"{name}: the check itself crashed: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3, file=sys.stdout)
        print(f"   ({name}: {time.time() - t0:.1f}s)", flush=True)
    print(f"COUNTS {counts['ok']} {counts['FAIL']} {counts['skip']}")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
