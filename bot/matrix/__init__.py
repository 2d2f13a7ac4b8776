"""The Matrix adapter: the only package that imports nio.

`client` owns login, sync, invites and sending; `identity` gives the bot's
device a cross-signed identity (MSC4153) with its keys in secret storage,
through `keys_api` (the endpoints nio lacks); `cross_signing` and
`secret_storage` are the pure cryptography they use (importable without nio,
e.g. by the configuration to check a recovery key).
"""
