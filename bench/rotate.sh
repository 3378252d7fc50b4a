#!/usr/bin/env bash
# The rotation as people script it by hand today: create a new secret at Intercom, put it in
# Vault, read it back, delete the old one. No state, no crash safety, no waiting for rollout:
# the baseline rotator is measured against (bench/run.py). Needs curl, jq and the bao CLI.
set -euo pipefail
: "${INTERCOM_URL:?}" "${INTERCOM_TOKEN:?}" "${SECRET_PATH:?}" "${BAO:=bao}"

old=$("$BAO" kv get -mount=secret -field=intercom_id "$SECRET_PATH" 2>/dev/null || true)
created=$(curl -sS --fail -X POST "$INTERCOM_URL/secure_mode_secrets" \
  -H "Authorization: Bearer $INTERCOM_TOKEN" -H "Intercom-Version: Preview" \
  -H "Accept: application/json" -H "Content-Type: application/json" \
  -d '{"name": "Production Web", "supports_web": true}')
id=$(jq -r .id <<<"$created")
secret=$(jq -r .secret <<<"$created")
"$BAO" kv put -mount=secret "$SECRET_PATH" secret="$secret" intercom_id="$id" >/dev/null
test "$("$BAO" kv get -mount=secret -field=secret "$SECRET_PATH")" = "$secret"
if [ -n "$old" ]; then
  curl -sS --fail -X DELETE "$INTERCOM_URL/secure_mode_secrets/$old" \
    -H "Authorization: Bearer $INTERCOM_TOKEN" -H "Intercom-Version: Preview" >/dev/null
fi
