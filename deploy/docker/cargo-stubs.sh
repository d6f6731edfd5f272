#!/bin/sh
# Creates an empty stand-in for every build target that Cargo.toml declares or that Cargo
# discovers by default, so `cargo build` can compile the dependencies alone in their own
# Docker layer (rebuilt only when Cargo.toml or Cargo.lock change). Used by deploy/Dockerfile;
# tests/deploy/check.sh runs it against the real Cargo.toml.
#
# Usage: cargo-stubs.sh [DIR]   (DIR holds Cargo.toml; default: the current directory)
set -eu
cd "${1:-.}"
[ -f Cargo.toml ] || { echo "cargo-stubs.sh: no Cargo.toml in $(pwd)" >&2; exit 1; }

stub() {  # stub PATH KIND: an empty library or a main function
  mkdir -p "$(dirname "$1")"
  if [ "$2" = lib ]; then : >"$1"; else echo 'fn main() {}' >"$1"; fi
  echo "$1"
}

stub src/lib.rs lib
stub src/main.rs bin

# [[bin]], [[bench]], [[test]], [[example]] tables: their `path`, or the default location of
# their `name` (Cargo refuses a manifest whose declared targets have no file).
awk '
  /^\[\[(bin|bench|test|example)\]\][ \t]*$/ { flush(); kind = $0; gsub(/[\[\] \t]/, "", kind); next }
  /^\[/                                     { flush(); kind = ""; next }
  kind != "" && /^[ \t]*name[ \t]*=/          { name = value($0) }
  kind != "" && /^[ \t]*path[ \t]*=/          { path = value($0) }
  function value(line) { sub(/^[^=]*=[ \t]*"/, "", line); sub(/".*$/, "", line); return line }
  function flush() {
    if (kind != "" && (path != "" || name != "")) {
      if (path == "") {
        dir = (kind == "bin") ? "src/bin" : (kind == "bench") ? "benches" : (kind == "test") ? "tests" : "examples"
        path = dir "/" name ".rs"
      }
      print path
    }
    name = ""; path = ""
  }
  END { flush() }
' Cargo.toml | while IFS= read -r target; do
  case "$target" in
    src/lib.rs) ;;                    # already there
    *) stub "$target" bin ;;
  esac
done
