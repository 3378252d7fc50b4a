# Vault policy `rotator-hook-client`: read the bearer token of rotator's confirmation hook, for a
# service that confirms its rollouts (POST /v1/targets/web/confirm). Kept apart from the
# consumer policy so that reading the secret and calling the hook are granted separately.
#   vault policy write rotator-hook-client deploy/vault/hook-client-policy.hcl
path "secret/data/rotator/hook" {
  capabilities = ["read"]
}
