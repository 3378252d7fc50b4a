#!/usr/bin/env bash
# The Vault (or OpenBao: set VAULT=bao) side of deploy/: the KV v2 mount, Kubernetes auth,
# the policies and roles, and the hook token. Safe to run again. Needs VAULT_ADDR and a
# VAULT_TOKEN allowed to manage mounts, auth methods and policies.
#
#   deploy/vault/setup.sh                 # everything but the Intercom token
#   vault kv put secret/intercom/api token=-    # then paste the Intercom token, Ctrl-D
#
# Consumer role: CONSUMER_SA and CONSUMER_NAMESPACE (default: service account `web` in
# namespace `web`) name the web backend's service account.
set -euo pipefail

vault="${VAULT:-vault}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
consumer_sa="${CONSUMER_SA:-web}"
consumer_ns="${CONSUMER_NAMESPACE:-web}"

# KV v2 at secret/ (a dev server already has it).
mounts="$("$vault" secrets list -format=json)"
if ! grep -q '"secret/"' <<<"$mounts"; then
  "$vault" secrets enable -path=secret -version=2 kv
fi

# Kubernetes auth. With Vault running in the cluster (https://vault.vault.svc:8200), Vault
# reviews tokens with its own service account, which needs the ClusterRole
# system:auth-delegator (the official Helm chart grants it).
auths="$("$vault" auth list -format=json)"
if ! grep -q '"kubernetes/"' <<<"$auths"; then
  "$vault" auth enable kubernetes
fi
# Vault outside the cluster: set KUBERNETES_HOST (the API server's URL) and KUBERNETES_CA_CERT
# (a file with its CA), and give Vault a token reviewer (see Vault's Kubernetes auth docs).
k8s_config=(kubernetes_host="${KUBERNETES_HOST:-https://kubernetes.default.svc}")
if [ -n "${KUBERNETES_CA_CERT:-}" ]; then
  k8s_config+=(kubernetes_ca_cert="@$KUBERNETES_CA_CERT")
fi
"$vault" write auth/kubernetes/config "${k8s_config[@]}"

"$vault" policy write rotator "$here/rotator-policy.hcl"
"$vault" policy write intercom-web-consumer "$here/consumer-policy.hcl"
"$vault" policy write rotator-hook-client "$here/hook-client-policy.hcl"

# rotator's pods log in with a projected service-account token whose audience is "vault"
# (deploy/overlays/*): the role checks that audience (Vault 1.13 or newer, or OpenBao).
# token_ttl is the current name of the older `ttl`; rotator renews its token and logs in again.
"$vault" write auth/kubernetes/role/rotator \
  bound_service_account_names=rotator \
  bound_service_account_namespaces=rotator \
  audience=vault \
  policies=rotator \
  token_ttl=1h \
  token_max_ttl=24h

# The web backend: reads its secret, and the hook token to confirm its rollouts.
"$vault" write auth/kubernetes/role/intercom-web-consumer \
  bound_service_account_names="$consumer_sa" \
  bound_service_account_namespaces="$consumer_ns" \
  policies=intercom-web-consumer,rotator-hook-client \
  token_ttl=1h

# The hook's bearer token, made once (kept if it exists): random, never printed.
if ! "$vault" kv get -field=token secret/rotator/hook >/dev/null 2>&1; then
  python3 -c 'import secrets; print(secrets.token_urlsafe(32), end="")' |
    "$vault" kv put secret/rotator/hook token=- >/dev/null
  echo "stored a new hook token at secret/rotator/hook" >&2
fi

if ! "$vault" kv get -field=token secret/intercom/api >/dev/null 2>&1; then
  echo "now store the Intercom token (scopes read/write_secure_mode_secret):" >&2
  echo "  $vault kv put secret/intercom/api token=-   # paste it, then Ctrl-D" >&2
fi
