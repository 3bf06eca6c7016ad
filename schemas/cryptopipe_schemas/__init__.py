"""cryptopipe contracts: Avro schemas, the CryptoPipeline spec model and codec helpers."""
