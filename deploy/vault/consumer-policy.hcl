# Vault policy `intercom-web-consumer`: the web backend reads the identity-verification secret
# that rotator keeps there, and nothing else. Keys: secret, intercom_id, name, created_at,
# rotation_id.
#   vault policy write intercom-web-consumer deploy/vault/consumer-policy.hcl
path "secret/data/intercom/identity-verification/web" {
  capabilities = ["read"]
}
