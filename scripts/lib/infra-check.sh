#!/usr/bin/env bash
# infra-check: static checks of the AWS SAM template in infra/template.yaml.
#
#   scripts/lib/infra-check.sh               run the checks; exit status 0 = all clean
#   . scripts/lib/infra-check.sh; infra_check  the same from another bash script (./scripts/test);
#                                             infra_check returns non-zero on any finding
#   scripts/lib/infra-check.sh --refreeze    rebuild infra/lint-constraints.txt from the pins below
#
# What it runs, in order, always all three, then a summary:
#   1. cfn-lint infra/template.yaml                        (any error or warning fails)
#   2. the SAM transform (aws-sam-translator, what CloudFormation runs at deploy) and cfn-lint of
#      its output, which catches what only shows after the transform (circular dependencies,
#      references to generated resources)
#   3. checkov -f infra/template.yaml --framework cloudformation   (any failed check fails, and so
#      does a skipped check without a reason in Metadata.checkov.skip)
#
# The tools live in a virtualenv at "${BRIDGE_CACHE:-$HOME/.cache/bridge-stack}/venv-lint",
# installed once from PyPI with the pinned versions below and infra/lint-constraints.txt (the
# frozen transitive dependencies); later runs only compare a stamp and start at once.
# INFRA_CHECK_PYTHON picks the interpreter (Python 3.10 to 3.14; default: the first such python3).
# No network is used after the install: checkov runs with --skip-download.

INFRA_CHECK_CFN_LINT_VERSION=1.58.0
INFRA_CHECK_CHECKOV_VERSION=3.3.30
INFRA_CHECK_SAM_TRANSLATOR_VERSION=1.115.0

_INFRA_CHECK_SELF="${BASH_SOURCE[0]}"

_infra_check_root() {
  (cd "$(dirname "$_INFRA_CHECK_SELF")/../.." && pwd)
}

_infra_check_venv_dir() {
  printf '%s/venv-lint\n' "${BRIDGE_CACHE:-$HOME/.cache/bridge-stack}"
}

_infra_check_pins() {
  printf '%s\n' \
    "cfn-lint==$INFRA_CHECK_CFN_LINT_VERSION" \
    "checkov==$INFRA_CHECK_CHECKOV_VERSION" \
    "aws-sam-translator==$INFRA_CHECK_SAM_TRANSLATOR_VERSION"
}

# Prints the first usable Python (3.10 <= version < 3.15; cfn-lint's range).
_infra_check_python() {
  local candidate
  for candidate in ${INFRA_CHECK_PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10 python3.14; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys, venv; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 15) else 1)' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "infra-check: no Python 3.10-3.14 with the venv module found (set INFRA_CHECK_PYTHON)" >&2
  return 1
}

# Creates or refreshes the lint venv; quiet and quick when it is already up to date.
infra_check_venv() {
  local root venv python constraints stamp
  root=$(_infra_check_root) || return 1
  venv=$(_infra_check_venv_dir)
  case "$venv" in
    */venv-lint) ;;
    *) echo "infra-check: refusing odd venv path $venv" >&2; return 1 ;;
  esac
  python=$(_infra_check_python) || return 1
  constraints="$root/infra/lint-constraints.txt"

  stamp=$(
    {
      _infra_check_pins
      "$python" -c 'import sys; print(sys.version)'
      [ -f "$constraints" ] && cat "$constraints"
    } | "$python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
  ) || return 1

  if [ -f "$venv/.infra-check-stamp" ] && [ "$(cat "$venv/.infra-check-stamp")" = "$stamp" ] \
    && [ -x "$venv/bin/cfn-lint" ] && [ -x "$venv/bin/checkov" ] \
    && "$venv/bin/python" -c 'import samtranslator' >/dev/null 2>&1; then
    return 0
  fi

  echo "infra-check: installing $(_infra_check_pins | tr '\n' ' ')into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")" || return 1
  "$python" -m venv "$venv" || return 1
  local pip_args=(--quiet --disable-pip-version-check --no-input)
  # shellcheck disable=SC2046
  if [ -f "$constraints" ] && "$venv/bin/python" -m pip install "${pip_args[@]}" -c "$constraints" $(_infra_check_pins); then
    :
  else
    # The frozen set can miss wheels on another Python version; the top-level pins still hold.
    echo "infra-check: install with infra/lint-constraints.txt failed; retrying with the top-level pins only" >&2
    # shellcheck disable=SC2046
    "$venv/bin/python" -m pip install "${pip_args[@]}" $(_infra_check_pins) || {
      echo "infra-check: pip install failed" >&2
      rm -rf "$venv"
      return 1
    }
  fi
  printf '%s\n' "$stamp" >"$venv/.infra-check-stamp"
}

# Rebuilds infra/lint-constraints.txt (after changing a pin above).
infra_check_refreeze() {
  local root python tmp
  root=$(_infra_check_root) || return 1
  python=$(_infra_check_python) || return 1
  tmp=$(mktemp -d) || return 1
  # shellcheck disable=SC2046
  if "$python" -m venv "$tmp/venv" \
    && "$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check $(_infra_check_pins); then
    {
      echo "# Frozen dependencies of the infra-check lint venv (scripts/lib/infra-check.sh)."
      echo "# Regenerate with: scripts/lib/infra-check.sh --refreeze"
      "$tmp/venv/bin/python" -m pip freeze --all --exclude pip --exclude setuptools --exclude wheel
    } >"$root/infra/lint-constraints.txt"
    rm -rf "$tmp"
    echo "infra-check: wrote infra/lint-constraints.txt"
  else
    rm -rf "$tmp"
    echo "infra-check: refreeze failed" >&2
    return 1
  fi
}

# SAM transform of the template, the way `sam package` + CloudFormation would see it (local
# CodeUri paths replaced by S3 locations), written as JSON to $2.
_infra_check_transform() {
  local venv=$1 out=$2
  AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" "$venv/bin/python" - infra/template.yaml "$out" <<'PY'
import json
import sys

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template names managed policies by ARN, so no lookup is needed (and none is made)."""

    def load(self):
        return {}


source, target = sys.argv[1], sys.argv[2]
with open(source, encoding="utf-8") as f:
    template = yaml_parse(f.read())
for name, resource in template.get("Resources", {}).items():
    if resource.get("Type") == "AWS::Serverless::Function":
        resource.setdefault("Properties", {})["CodeUri"] = f"s3://packaged-by-sam/{name}.zip"
try:
    result = transform(template, {}, NoManagedPolicies())
except InvalidDocumentException as e:
    for cause in e.causes:
        print(f"SAM transform error: {cause.message}")
    sys.exit(1)
with open(target, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
print(f"SAM transform: {len(result.get('Resources', {}))} CloudFormation resources")
PY
}

# Runs checkov and prints its findings; returns non-zero on a failed check or an unexplained skip.
_infra_check_checkov() {
  local venv=$1 json rc
  json=$(mktemp) || return 1
  "$venv/bin/checkov" -f infra/template.yaml --framework cloudformation --skip-download \
    --output json >"$json" 2>"$json.err"
  rc=$?
  "$venv/bin/python" - "$json" "$rc" <<'PY'
import json
import sys

path, rc = sys.argv[1], int(sys.argv[2])
try:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
except (OSError, ValueError) as e:
    print(f"checkov: no usable JSON output ({e}); exit status {rc}")
    sys.exit(1)
reports = data if isinstance(data, list) else [data]
passed, failed, skipped = [], [], []
for report in reports:
    results = report.get("results", {})
    passed += results.get("passed_checks", [])
    failed += results.get("failed_checks", [])
    skipped += results.get("skipped_checks", [])

def reason(check):
    # checkov 3 keeps the Metadata.checkov.skip comment under check_result
    return ((check.get("check_result") or {}).get("suppress_comment")
            or check.get("suppress_comment") or "").strip()

def where(check):
    lines = check.get("file_line_range") or ["?", "?"]
    return f"{check.get('resource')} (infra/template.yaml:{lines[0]})"

print(f"checkov: passed={len(passed)} failed={len(failed)} skipped={len(skipped)}")
for check in skipped:
    print(f"  skipped {check['check_id']} on {where(check)}: {reason(check)}")
for check in failed:
    print(f"  FAILED {check['check_id']} {check.get('check_name')} on {where(check)}")
unexplained = [c for c in skipped if reason(c) in ("", "No comment provided")]
for check in unexplained:
    print(f"  FAILED skip of {check['check_id']} on {where(check)} has no reason")
ok = not failed and not unexplained and passed and rc == 0
sys.exit(0 if ok else 1)
PY
  rc=$?
  if [ "$rc" -ne 0 ] && [ -s "$json.err" ]; then
    sed 's/^/  checkov stderr: /' "$json.err" | tail -n 20
  fi
  rm -f "$json" "$json.err"
  return "$rc"
}

infra_check() {
  local root venv tmp failures=0 lint=ok transformed=ok checkov=ok
  root=$(_infra_check_root) || return 1
  venv=$(_infra_check_venv_dir)
  if ! infra_check_venv; then
    echo "infra-check: FAILED (could not set up the lint tools)"
    return 1
  fi
  tmp=$(mktemp -d) || return 1

  echo "== cfn-lint $("$venv/bin/cfn-lint" --version | awk '{print $2}') infra/template.yaml"
  if (cd "$root" && "$venv/bin/cfn-lint" infra/template.yaml); then
    echo "cfn-lint: clean"
  else
    lint=FAILED
    failures=$((failures + 1))
  fi

  echo "== SAM transform (aws-sam-translator $INFRA_CHECK_SAM_TRANSLATOR_VERSION), then cfn-lint of the result"
  if (cd "$root" && _infra_check_transform "$venv" "$tmp/transformed.json") \
    && "$venv/bin/cfn-lint" "$tmp/transformed.json"; then
    echo "transformed template: clean"
  else
    transformed=FAILED
    failures=$((failures + 1))
  fi

  echo "== checkov $("$venv/bin/checkov" --version) -f infra/template.yaml --framework cloudformation"
  if ! (cd "$root" && _infra_check_checkov "$venv"); then
    checkov=FAILED
    failures=$((failures + 1))
  fi

  rm -rf "$tmp"
  if [ "$failures" -eq 0 ]; then
    echo "infra-check: OK (cfn-lint $lint, SAM transform $transformed, checkov $checkov)"
    return 0
  fi
  echo "infra-check: FAILED (cfn-lint $lint, SAM transform $transformed, checkov $checkov)"
  return 1
}

# Run directly (not sourced): act on the arguments and exit.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    "") infra_check; exit $? ;;
    --refreeze) infra_check_refreeze; exit $? ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--refreeze]" >&2; exit 2 ;;
  esac
fi
