# Vault policy `rotator`: what rotator itself may do (KV v2 mounted at `secret/`).
#   vault policy write rotator deploy/vault/rotator-policy.hcl
# If you change [vault] mount, state_path or a target's vault_path in rotator.toml, change the
# paths here to match.

# Its state: one record per target, written only with check-and-set (cas is an option of
# create/update, not a capability of its own).
path "secret/data/rotator/state/*" {
  capabilities = ["create", "read", "update"]
}

# The records' metadata: cas_required on each record, versions, and listing the targets.
path "secret/metadata/rotator/state/*" {
  capabilities = ["create", "read", "update", "list"]
}

# What the consumers read: rotator stores each new secret there and reads it back.
path "secret/data/intercom/identity-verification/*" {
  capabilities = ["create", "read", "update"]
}

path "secret/metadata/intercom/identity-verification/*" {
  capabilities = ["create", "read", "update", "list"]
}

# The Intercom API token (targets' token_vault = "intercom/api#token"): read only.
path "secret/data/intercom/api" {
  capabilities = ["read"]
}

# The confirmation hook's bearer token ([server] hook_token_vault = "rotator/hook#token").
path "secret/data/rotator/hook" {
  capabilities = ["read"]
}

# Token renewal and lookup-self come with Vault's `default` policy, which the role keeps.
