#!/usr/bin/env bash
# The tools that check the deployment manifests offline (no cluster, no GitHub):
#   kubeconform and kustomize, built once with Go from the Go module proxy;
#   Kubernetes' JSON schemas, from the PyPI wheel kubernetes-validate (refs made local);
#   the KEDA CRDs' schemas, converted from the KEDA Go module's config/crd/bases;
#   the compose-spec JSON schema, from the npm package dclint (it ships the upstream file);
#   the AsyncAPI 3.0.0 schema, from the npm package @asyncapi/specs (for docs/asyncapi.json).
# Every version is pinned below; each lands in a folder of its own under
# $FLEET_TOOLS_HOME/manifest-tools (default ~/.cache/ai-job-fleet, shared by every clone of
# this user: a fresh clone, as CI makes, does not build them again), so a changed pin
# installs anew and a cached run takes a second.
# usage: deploy/local/manifest-tools.sh [install|check]
#   install (default): install what is missing, then print the paths as KEY=VALUE lines
#   check: install, then validate `kustomize build deploy/kubernetes`, the example Secret and
#          deploy/compose.yaml (what tests/unit/test_deploy_manifests.py does, and more)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KUBECONFORM_VERSION=v0.8.0
KUSTOMIZE_VERSION=v5.8.2
KEDA_VERSION=v2.21.0
KUBERNETES_VERSION=1.35.0 # the API the manifests are checked against
KUBERNETES_VALIDATE_VERSION=1.37.0 # has the schemas of Kubernetes 1.25 to 1.37
KUBERNETES_VALIDATE_SHA256=85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9
DCLINT_VERSION=3.1.0
ASYNCAPI_SPECS_VERSION=6.11.1 # the AsyncAPI 3.0.0 document schema, for docs/asyncapi.json
ASYNCAPI_SPECS_SHA512=0375812ea00a1a8276fba15616da63065090d6814272ce06c45ef3b081af36aa7f9251941e3940dda01c67d5cc3292c613cccf7980f3db1f4598ee834ae2ab69
DCLINT_SHA512=69f4c67734455172b8c82a488845bf2ce47ef5338c10384d95d0e9e7a5425b39fb243983e39d4f7148bae3418694c1e06c7289d74ac3066e0fb697016e3aa55f

TOOLS="${FLEET_TOOLS_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ai-job-fleet}/manifest-tools"
LOG="$FLEET_LOG_DIR/manifest-tools-install.log"
HERE="$REPO_ROOT/deploy/local"
PYTHON="${PYTHON:-python3}" # runs pip download
# The schema conversion reads YAML: the project's environment has PyYAML.
SCHEMA_PY="$REPO_ROOT/.venv/bin/python"
[[ -x "$SCHEMA_PY" ]] || SCHEMA_PY="$PYTHON"
mkdir -p "$TOOLS"

failed() { tail -n 30 "$LOG" >&2; die "$1 (log: $LOG)"; }

need() { command -v "$1" >/dev/null || die "$1 is missing: $2"; }

go_env() { # go with this machine's toolchain and none of the caller's flags
  env GOTOOLCHAIN=local GOFLAGS= GOWORK=off GO111MODULE=on CGO_ENABLED=0 "$@"
}

go_tool() { # go_tool NAME PACKAGE VERSION: $TOOLS/NAME-VERSION/NAME, built once
  local name=$1 package=$2 version=$3 dir="$TOOLS/$1-$3"
  if [[ ! -x "$dir/$name" ]]; then
    need go "install Go 1.26+ (Debian: apt-get install golang)"
    say "building $name $version with Go into $dir (once: about a minute)"
    (cd "${TMPDIR:-/tmp}" && go_env GOBIN="$dir" go install -trimpath "$package@$version") >>"$LOG" 2>&1 \
      || failed "go could not build $package@$version"
  fi
}

kubernetes_schemas() { # $TOOLS/kubernetes-vX.Y.Z/vX.Y.Z-local{,-strict}/<kind>-<group>-<version>.json
  local out="$TOOLS/kubernetes-v$KUBERNETES_VERSION-kv$KUBERNETES_VALIDATE_VERSION"
  [[ -f "$out/.complete" ]] && return 0
  need "$PYTHON" "install Python 3.11+ with pip"
  say "installing the Kubernetes $KUBERNETES_VERSION JSON schemas (PyPI kubernetes-validate==$KUBERNETES_VALIDATE_VERSION) into $out (once)"
  local tmp; tmp="$(mktemp -d)"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$tmp" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >>"$LOG" 2>&1 \
    || { rm -rf "$tmp"; failed "pip could not download kubernetes-validate"; }
  local wheel="$tmp/kubernetes_validate-$KUBERNETES_VALIDATE_VERSION-py3-none-any.whl"
  echo "$KUBERNETES_VALIDATE_SHA256  $wheel" | sha256sum --check --quiet >>"$LOG" 2>&1 \
    || { rm -rf "$tmp"; failed "kubernetes-validate's wheel does not have the pinned sha256"; }
  "$PYTHON" "$HERE/manifest_schemas.py" k8s "$wheel" "$KUBERNETES_VERSION" "$out" >>"$LOG" 2>&1 \
    || { rm -rf "$tmp"; failed "the Kubernetes schemas could not be unpacked"; }
  rm -rf "$tmp"
  touch "$out/.complete"
}

keda_schemas() { # $TOOLS/keda-vX.Y.Z/keda.sh/<kind>_<version>.json
  local out="$TOOLS/keda-$KEDA_VERSION"
  [[ -f "$out/.complete" ]] && return 0
  need go "install Go 1.26+ (Debian: apt-get install golang)"
  say "converting the KEDA $KEDA_VERSION CRDs (Go module github.com/kedacore/keda/v2) into JSON schemas in $out (once)"
  local info dir
  info="$(cd "${TMPDIR:-/tmp}" && go_env go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" 2>>"$LOG")" \
    || failed "go could not download github.com/kedacore/keda/v2@$KEDA_VERSION"
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")"
  [[ -d "$dir/config/crd/bases" ]] || die "the KEDA module at '$dir' has no config/crd/bases"
  "$SCHEMA_PY" "$HERE/manifest_schemas.py" crd "$out" "$dir"/config/crd/bases/keda.sh_*.yaml >>"$LOG" 2>&1 \
    || failed "the KEDA CRDs could not be converted"
  touch "$out/.complete"
}

npm_file() { # npm_file PACKAGE VERSION SHA512 FILE OUT: FILE of the npm package, as OUT
  local package=$1 version=$2 sha512=$3 file=$4 out=$5
  [[ -f "$out" ]] && return 0
  need npm "install Node.js with npm (Debian: apt-get install npm)"
  say "installing $file of npm $package@$version into $out (once)"
  local tmp; tmp="$(mktemp -d)"
  npm pack --silent --ignore-scripts --no-update-notifier --pack-destination "$tmp" \
    "$package@$version" >>"$LOG" 2>&1 || { rm -rf "$tmp"; failed "npm could not fetch $package"; }
  local tarball; tarball="$(ls "$tmp"/*.tgz)"
  echo "$sha512  $tarball" | sha512sum --check --quiet >>"$LOG" 2>&1 \
    || { rm -rf "$tmp"; failed "$package's tarball does not have the pinned sha512"; }
  tar -xzf "$tarball" -C "$tmp" "package/$file" \
    || { rm -rf "$tmp"; die "$package@$version has no $file"; }
  mkdir -p "$(dirname "$out")"
  mv "$tmp/package/$file" "$out"
  rm -rf "$tmp"
}

install() {
  go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
  go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
  kubernetes_schemas
  keda_schemas
  COMPOSE_SCHEMA="$TOOLS/dclint-$DCLINT_VERSION/compose.schema.json"
  npm_file dclint "$DCLINT_VERSION" "$DCLINT_SHA512" schemas/compose.schema.json "$COMPOSE_SCHEMA"
  ASYNCAPI_SCHEMA="$TOOLS/asyncapi-specs-$ASYNCAPI_SPECS_VERSION/3.0.0.json"
  npm_file @asyncapi/specs "$ASYNCAPI_SPECS_VERSION" "$ASYNCAPI_SPECS_SHA512" schemas/3.0.0.json "$ASYNCAPI_SCHEMA"
  KUBECONFORM="$TOOLS/kubeconform-$KUBECONFORM_VERSION/kubeconform"
  KUSTOMIZE="$TOOLS/kustomize-$KUSTOMIZE_VERSION/kustomize"
  # kubeconform's -schema-location templates (text/template, filled per resource).
  KUBERNETES_SCHEMA_LOCATION="$TOOLS/kubernetes-v$KUBERNETES_VERSION-kv$KUBERNETES_VALIDATE_VERSION/v$KUBERNETES_VERSION-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
  KEDA_SCHEMA_LOCATION="$TOOLS/keda-$KEDA_VERSION/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
}

print_paths() {
  echo "KUBECONFORM=$KUBECONFORM"
  echo "KUSTOMIZE=$KUSTOMIZE"
  echo "KUBERNETES_SCHEMA_LOCATION=$KUBERNETES_SCHEMA_LOCATION"
  echo "KEDA_SCHEMA_LOCATION=$KEDA_SCHEMA_LOCATION"
  echo "COMPOSE_SCHEMA=$COMPOSE_SCHEMA"
  echo "ASYNCAPI_SCHEMA=$ASYNCAPI_SCHEMA"
}

check() {
  local k8s="$REPO_ROOT/deploy/kubernetes"
  say "kustomize build deploy/kubernetes | kubeconform -strict (Kubernetes $KUBERNETES_VERSION, KEDA $KEDA_VERSION)"
  "$KUSTOMIZE" build "$k8s" | "$KUBECONFORM" -strict -summary \
    -schema-location "$KUBERNETES_SCHEMA_LOCATION" -schema-location "$KEDA_SCHEMA_LOCATION" -
  "$KUBECONFORM" -strict -summary -schema-location "$KUBERNETES_SCHEMA_LOCATION" \
    "$k8s/examples/kafka-secret.yaml" "$k8s/examples/gateway-keys-secret.yaml"
  say "deploy/compose.yaml against the compose-spec schema"
  "$SCHEMA_PY" "$HERE/manifest_schemas.py" compose "$COMPOSE_SCHEMA" "$REPO_ROOT/deploy/compose.yaml"
}

case "${1:-install}" in
  install) install; print_paths ;;
  check) install; check ;;
  *) die "usage: $0 [install|check]" ;;
esac
