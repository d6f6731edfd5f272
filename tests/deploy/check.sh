#!/usr/bin/env bash
# Validates footfall's deployment files (deploy/) without a Docker engine or a Kubernetes cluster:
#   yaml         every YAML/JSON/XML file under deploy/ parses
#   compose      compose.yaml: services, pinned images, healthchecks, start order, volumes, mounts that
#                exist, variables (.env.example complete; compose refuses it unfilled), the Compose
#                Specification's JSON schema, Grafana provisioning wired to the mounts
#   dockerfile   deploy/Dockerfile through BuildKit's own parser (the `dockerfile` package): stages,
#                pinned bases, COPY sources present and not ignored, every include_bytes! file in the
#                build stage, non-root USER, HEALTHCHECK, the dependency-layer stub script run on the
#                real Cargo.toml; shellcheck of the shell scripts
#   k8s          deploy/k8s against the Kubernetes 1.37 and 1.30 OpenAPI schemas (kubernetes-validate,
#                strict), cross-references (selectors, Services, PDB, HPA, ConfigMap/Secret, probes,
#                grace period), the Altinity example's structure
#   systemd      footfall.service: required settings, `systemd-analyze verify`, offline security score
#   clickhouse18 a real ClickHouse 18.16 with the config.d/users.d files compose mounts
#   initdb       the init script's SQL: no placeholders, hashes, HOST; parsed by ClickHouse 26.x (chdb)
#   node         the image's web stage: npm ci + npm run build on the build context's files
#   binary       target/release/footfall (if built) started with compose's, Kubernetes' and systemd's
#                environments: /healthz, /readyz, `footfall health`, SIGTERM within the grace period
# Installs what it needs (apt: clickhouse-server, shellcheck; pip: pyyaml, kubernetes-validate,
# check-jsonschema, dockerfile, chdb-core) when missing. Run from anywhere:
#   bash tests/deploy/check.sh [SECTION...]
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '%s\n' "$*"; }
pip_install() {  # pip_install MODULE PACKAGE
  python3 -c "import $1" >/dev/null 2>&1 && return 0
  say "== installing $2 (pip)"
  python3 -m pip install -q "$2" >/dev/null 2>&1 \
    || python3 -m pip install -q --break-system-packages "$2" >/dev/null 2>&1 \
    || say "   could not install $2"
}
apt_updated=""
apt_install() {  # apt_install PACKAGE
  command -v apt-get >/dev/null 2>&1 || return 0
  if [ -z "$apt_updated" ]; then
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
    apt_updated=1
  fi
  say "== installing $1 (apt)"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$1" >/dev/null 2>&1 || say "   could not install $1"
}

command -v python3 >/dev/null 2>&1 || apt_install python3
command -v python3 >/dev/null 2>&1 || { say "FAIL python3 is needed"; exit 1; }
python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
pip_install yaml pyyaml
pip_install kubernetes_validate kubernetes-validate
pip_install check_jsonschema check-jsonschema
pip_install dockerfile dockerfile
pip_install chdb chdb-core
if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ] && ! command -v clickhouse >/dev/null 2>&1; then
  apt_install clickhouse-server
fi
command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
# pip may have put console scripts (check-jsonschema) in the user's bin directory
PATH="$PATH:$(python3 -c 'import site, os; print(os.path.join(site.getuserbase(), "bin"))' 2>/dev/null || true)"
export PATH

start=$(date +%s)
tmpout=$(mktemp "${TMPDIR:-/tmp}/footfall-deploy-check.XXXXXX")
trap 'rm -f "$tmpout"' EXIT
set +e
python3 tests/deploy/check_deploy.py "$@" | tee "$tmpout"
rc=${PIPESTATUS[0]}
set -e
out=$(cat "$tmpout")

counts=$(grep '^COUNTS ' <<<"$out" | tail -n 1 || true)
read -r _ passed failed skipped <<<"${counts:-COUNTS 0 1 0}"
say ""
say "== summary ($(( $(date +%s) - start ))s)"
say "checked:   YAML/JSON/XML parsing; compose.yaml against the Compose Specification schema with"
say "           .env.example filled in (and refused unfilled); Dockerfile through BuildKit's parser;"
say "           Kubernetes manifests against the 1.37 and 1.30 schemas plus cross-references;"
say "           systemd unit (systemd-analyze verify + security); the ClickHouse config.d/users.d files"
say "           in a real 18.16 server; the init script's SQL on 26.x (chdb: parsed); the web stage's"
say "           npm commands; the footfall binary with each environment (when built)"
say "not run:   docker build / docker compose up (no Docker engine here), kubectl apply (no cluster),"
say "           the Altinity CRD schema, access_control_improvements taking effect (18.16 ignores"
say "           them, chdb applies no server settings), the unit under a running systemd"
if grep -q '^skip ' <<<"$out"; then
  say "skipped:"
  grep '^skip ' <<<"$out" | sed 's/^skip /  - /'
fi
if [ "$failed" -gt 0 ]; then
  say "failed:"
  grep '^FAIL ' <<<"$out" | sed 's/^FAIL /  - /'
fi
say "deploy: $passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
