"""The Matrix adapter: the only package that imports nio.

`client.MatrixChat` (the core's `ChatClient`) is composed of one part per
concern: `login` (saved session, login with or without MAS: `mas` reads what
the homeserver publishes, `tchap` its directory and Matrix-ID rule),
`session_state` and `recovery` (an expired account, a revoked token: named
states the bot waits in or leaves by itself), `sync` (filter,
token, the loop), `events` (timeline events to the core's `Incoming*`),
`undecryptable` (events waiting for their room key), `invites`, `authority`
(power levels, v12 creators) and `sending` (quiet notices or messages that
ring, files, direct rooms, pacing after 429s). `identity` gives the bot's
device a cross-signed identity (MSC4153) with its keys in secret storage,
through `keys_api` (the endpoints nio lacks), `uia` (the password or,
under MAS, a person's approval to replace keys), `stored_keys` (the keys in
secret storage) and `key_files` (the self-signing key, the only one kept
here); `cross_signing` and `secret_storage` are the pure cryptography
they use (importable without nio, e.g. by the configuration to check a
recovery key). `store_key` derives the key nio's crypto store is pickled
with from the operator's secret, and moves stores off nio's default key.
`state` says what room state is: state events from the homeserver, never
an encrypted event's plaintext; its `StateClient` is the nio client `login`
makes, whose room model follows that rule too.
"""
