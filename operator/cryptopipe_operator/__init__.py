"""cryptopipe operator: reconciles CryptoPipeline resources with kopf."""
