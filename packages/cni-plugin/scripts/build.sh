#!/usr/bin/env bash
# Builds the CNI plugin (dist/nodenet) and the libcni driver the tests and the benchmark use (dist/cni-driver):
# static binaries, offline, from Debian's Go (golang-go) and CNI library (golang-github-appc-cni-dev).
set -euo pipefail
cd "$(dirname "$0")/../src"
if ! command -v go >/dev/null; then
  echo "cni-plugin: go is not installed: install golang-go and golang-github-appc-cni-dev (bash scripts/setup.sh does)" >&2
  exit 1
fi
if [ ! -d /usr/share/gocode/src/github.com/containernetworking/cni ]; then
  echo "cni-plugin: the CNI library is missing: install golang-github-appc-cni-dev (bash scripts/setup.sh does)" >&2
  exit 1
fi
export GOPROXY=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
# Go needs a build cache and a GOPATH; CI shells may have no HOME.
if [ -z "${HOME:-}" ]; then
  export GOCACHE="${GOCACHE:-/tmp/nodenet-go/cache}" GOPATH="${GOPATH:-/tmp/nodenet-go/path}"
fi
mkdir -p ../dist
go build -trimpath -ldflags='-s -w' -o ../dist/nodenet ./plugin
go build -trimpath -ldflags='-s -w' -o ../dist/cni-driver ./driver
