"""rotator: rotates Intercom identity-verification secrets and keeps them in Vault."""

__version__ = "0.1.0"
