// A real matrix-js-sdk client (Element Web's stack, Rust crypto) driven by tests over JSON lines.
//
// stdin:  one request per line   {"id": n, "cmd": "...", ...args}
// stdout: one response per line  {"id": n, "ok": true, "result": ...} | {"id": n, "ok": false, "error": "..."}
//         and unsolicited events {"event": "timeline" | "invite", ...}
// Nothing else is ever written to stdout: the SDK's logs are dropped (or sent to stderr when
// JSCLIENT_DEBUG=1), and our own diagnostics go to stderr.
//
// Shields are reported by name: {"colour": EventShieldColour name ("NONE" | "GREY" | "RED"),
// "reason": EventShieldReason name ("UNVERIFIED_IDENTITY", "UNSIGNED_DEVICE", "UNKNOWN_DEVICE",
// "AUTHENTICITY_NOT_GUARANTEED", ...) or null}, as getEncryptionInfoForEvent returns them.
// Decryption failures are reported by DecryptionFailureCode value (e.g.
// "MEGOLM_UNKNOWN_INBOUND_SESSION_ID", "UNSIGNED_SENDER_DEVICE").

import readline from "node:readline";

const DEBUG = Boolean(process.env.JSCLIENT_DEBUG);

function diag(...args) {
    process.stderr.write(
        `[jsclient] ${args.map((a) => (typeof a === "string" ? a : safeJson(a))).join(" ")}\n`,
    );
}

function safeJson(value) {
    try {
        return value instanceof Error ? `${value.name}: ${value.message}` : JSON.stringify(value);
    } catch {
        return String(value);
    }
}

// Whatever anything (the SDK, the wasm crypto, loglevel) prints must never reach stdout.
for (const method of ["log", "info", "debug", "trace", "warn", "error", "dir", "table"]) {
    console[method] = DEBUG ? (...args) => diag(`console.${method}`, ...args) : () => {};
}

// Node 20: the SDK calls Promise.withResolvers (Node >= 22).
if (typeof Promise.withResolvers !== "function") {
    Promise.withResolvers = function withResolvers() {
        let resolve, reject;
        const promise = new this((res, rej) => {
            resolve = res;
            reject = rej;
        });
        return { promise, resolve, reject };
    };
}

// Imported only now, so that nothing runs before the console is redirected.
const sdk = await import("matrix-js-sdk");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");
const { logger: globalLogger } = await import("matrix-js-sdk/lib/logger.js");
const { ClientEvent, RoomEvent, MatrixEventEvent, createClient } = sdk;
const {
    AllDevicesIsolationMode,
    OnlySignedDevicesIsolationMode,
    EventShieldColour,
    EventShieldReason,
} = cryptoApi;

if (!DEBUG) globalLogger.setLevel?.("silent");

const quietLogger = {
    trace: () => {},
    debug: () => {},
    info: () => {},
    warn: DEBUG ? (...a) => diag("warn", ...a) : () => {},
    error: DEBUG ? (...a) => diag("error", ...a) : () => {},
    getChild: () => quietLogger,
};

function write(obj) {
    process.stdout.write(`${JSON.stringify(obj)}\n`);
}

let client = null;
let userId = null;

// Timeline events already reported: event id -> set of "ok" / failure reasons.
const reported = new Map();
const invited = new Set();

function shieldOf(info) {
    if (!info) return null;
    return {
        colour: EventShieldColour[info.shieldColour] ?? String(info.shieldColour),
        reason: info.shieldReason == null ? null : (EventShieldReason[info.shieldReason] ?? String(info.shieldReason)),
    };
}

async function reportEvent(event) {
    try {
        const eventId = event.getId();
        // Local echoes of our own sends: reported once the server gave them an id.
        if (!eventId || eventId.startsWith("~")) return;
        if (event.status !== null && event.status !== "sent") return;
        if (event.shouldAttemptDecryption() || event.isBeingDecrypted()) {
            await client.decryptEventIfNeeded(event);
        }
        if (event.isBeingDecrypted()) return; // a retry is running: its Decrypted event reports it
        const encrypted = event.isEncrypted();
        const failure = event.isDecryptionFailure() ? (event.decryptionFailureReason ?? "UNKNOWN_ERROR") : null;
        const key = failure ?? "ok";
        let seen = reported.get(eventId);
        if (!seen) reported.set(eventId, (seen = new Set()));
        if (seen.has(key) || seen.has("ok")) return;
        seen.add(key);
        let shield = null;
        if (encrypted && !failure) {
            try {
                shield = shieldOf(await client.getCrypto().getEncryptionInfoForEvent(event));
            } catch (err) {
                diag("getEncryptionInfoForEvent failed", eventId, err);
            }
        }
        const line = {
            event: "timeline",
            room_id: event.getRoomId(),
            event_id: eventId,
            sender: event.getSender(),
            type: event.getType(),
            content: failure ? null : event.getContent(),
            encrypted,
            decryption_failure: failure,
            shield,
            origin_server_ts: event.getTs(),
        };
        const stateKey = event.getStateKey();
        if (stateKey !== undefined) line.state_key = stateKey;
        write(line);
    } catch (err) {
        diag("reportEvent failed", err);
    }
}

function reportInvite(room) {
    if (invited.has(room.roomId)) return;
    invited.add(room.roomId);
    const me = room.getMember(userId);
    const inviter = room.getDMInviter?.() ?? me?.events?.member?.getSender() ?? null;
    write({ event: "invite", room_id: room.roomId, inviter, is_direct: Boolean(me?.events?.member?.getContent()?.is_direct) });
}

function waitFor(check, what, timeoutMs = 30000) {
    return new Promise((resolve, reject) => {
        const started = Date.now();
        const tick = async () => {
            try {
                const value = await check();
                if (value) return resolve(value);
            } catch (err) {
                return reject(err);
            }
            if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
            setTimeout(tick, 50);
        };
        tick();
    });
}

function need(args, name) {
    if (args[name] === undefined || args[name] === null) throw new Error(`missing argument: ${name}`);
    return args[name];
}

function requireClient() {
    if (!client) throw new Error("not started: send `start` first");
    return client;
}

// A room the client knows, and, if it is encrypted, knows to be encrypted: sending before
// that would go out in the clear.
async function knownRoom(roomId, { encrypted } = {}) {
    const c = requireClient();
    return waitFor(async () => {
        const room = c.getRoom(roomId);
        if (!room || room.getMyMembership() !== "join") return null;
        if (encrypted && !(await c.getCrypto().isEncryptionEnabledInRoom(roomId))) return null;
        return room;
    }, `room ${roomId} to be joined and synced`);
}

async function roomIsEncrypted(roomId) {
    const room = client.getRoom(roomId);
    return Boolean(room?.currentState.getStateEvents("m.room.encryption", ""));
}

const commands = {
    async start(args) {
        if (client) throw new Error("already started");
        const baseUrl = need(args, "homeserver");
        const user = need(args, "user_id");
        const password = need(args, "password");
        const isolation = args.isolation ?? "only_signed";
        if (!["only_signed", "all"].includes(isolation)) throw new Error(`unknown isolation: ${isolation}`);

        const loginClient = createClient({ baseUrl, logger: quietLogger });
        const login = await loginClient.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user },
            password,
            initial_device_display_name: "jsclient (matrix-js-sdk)",
        });
        loginClient.stopClient();
        userId = login.user_id;
        // With a recovery key: Element's "verify with recovery key" (the account's
        // cross-signing keys are read from secret storage, and this device signed with them).
        const recoveryKey = args.recovery_key ?? null;
        client = createClient({
            baseUrl,
            userId: login.user_id,
            deviceId: login.device_id,
            accessToken: login.access_token,
            logger: quietLogger,
            cryptoCallbacks: {
                getSecretStorageKey: async ({ keys }) => {
                    if (!recoveryKey) return null;
                    const defaultKeyId = await client.secretStorage.getDefaultKeyId();
                    const keyId = defaultKeyId in keys ? defaultKeyId : Object.keys(keys)[0];
                    return [keyId, cryptoApi.decodeRecoveryKey(recoveryKey)];
                },
            },
        });
        await client.initRustCrypto({ useIndexedDB: false });
        const crypto = client.getCrypto();
        const bootstrap = () =>
            crypto.bootstrapCrossSigning({
                setupNewCrossSigning: !recoveryKey,
                authUploadDeviceSigningKeys: async (makeRequest) => {
                    await makeRequest({
                        type: "m.login.password",
                        identifier: { type: "m.id.user", user: login.user_id },
                        password,
                    });
                },
            });
        // A new identity at once; the account's own, as Element does, once synced (its
        // public keys must be known to check the private ones read from secret storage).
        if (!recoveryKey) await bootstrap();
        crypto.setDeviceIsolationMode(
            isolation === "all" ? new AllDevicesIsolationMode(true) : new OnlySignedDevicesIsolationMode(),
        );

        client.on(RoomEvent.Timeline, (event, _room, _toStart, removed) => {
            if (!removed) void reportEvent(event);
        });
        client.on(RoomEvent.LocalEchoUpdated, (event) => void reportEvent(event));
        client.on(MatrixEventEvent.Decrypted, (event) => void reportEvent(event));
        client.on(RoomEvent.MyMembership, (room, membership) => {
            if (membership === "invite") reportInvite(room);
        });

        const prepared = new Promise((resolve, reject) => {
            const onSync = (state, _prev, data) => {
                if (state === "PREPARED" || state === "SYNCING") {
                    client.off(ClientEvent.Sync, onSync);
                    resolve();
                } else if (state === "ERROR" && !client.isInitialSyncComplete()) {
                    diag("sync error", data?.error ?? "");
                }
            };
            client.on(ClientEvent.Sync, onSync);
        });
        await client.startClient({ initialSyncLimit: 20 });
        await prepared;
        if (recoveryKey) {
            await crypto.getUserDeviceInfo([login.user_id], true);
            await bootstrap();
            // The device's new signature shows once the client has queried its own keys again.
            await waitFor(
                async () =>
                    (await crypto.getDeviceVerificationStatus(login.user_id, login.device_id))?.signedByOwner,
                "the device to be signed with the keys from secret storage",
                15000,
            ).catch(() => {}); // reported below as device_signed_by_owner: false
        }
        const status = await crypto.getCrossSigningStatus();
        const own = await crypto.getDeviceVerificationStatus(login.user_id, login.device_id);
        return {
            device_id: login.device_id,
            user_id: login.user_id,
            cross_signing: {
                private_keys_cached: status.privateKeysCachedLocally,
                private_keys_in_secret_storage: status.privateKeysInSecretStorage,
                master_key: (await crypto.getCrossSigningKeyId()) ?? null,
                device_signed_by_owner: Boolean(own?.signedByOwner),
            },
        };
    },

    async create_room(args) {
        const c = requireClient();
        const encrypted = args.encrypted ?? true;
        const options = {
            invite: args.invite ?? [],
            preset: args.is_direct ? "trusted_private_chat" : "private_chat",
            is_direct: Boolean(args.is_direct),
            initial_state: encrypted
                ? [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }]
                : [],
        };
        if (args.name) options.name = args.name;
        const { room_id: roomId } = await c.createRoom(options);
        await knownRoom(roomId, { encrypted });
        // Room keys go to the members the client knows of when it sends: wait for the invites.
        await waitFor(() => {
            const room = c.getRoom(roomId);
            return options.invite.every((u) => ["invite", "join"].includes(room.getMember(u)?.membership));
        }, `invites in ${roomId}`);
        if (DEBUG) diag("members", c.getRoom(roomId).getMembers().map((m) => `${m.userId}:${m.membership}`));
        return { room_id: roomId };
    },

    async join(args) {
        const roomId = need(args, "room_id");
        await requireClient().joinRoom(roomId);
        await knownRoom(roomId);
        return { room_id: roomId };
    },

    async send(args) {
        const roomId = need(args, "room_id");
        await knownRoom(roomId, { encrypted: await roomIsEncrypted(roomId) });
        const content = { msgtype: args.msgtype ?? "m.text", body: need(args, "body"), ...(args.content ?? {}) };
        const { event_id: eventId } = await client.sendEvent(roomId, "m.room.message", content);
        return { event_id: eventId };
    },

    async react(args) {
        const roomId = need(args, "room_id");
        await knownRoom(roomId, { encrypted: await roomIsEncrypted(roomId) });
        const content = {
            "m.relates_to": { rel_type: "m.annotation", event_id: need(args, "event_id"), key: need(args, "key") },
        };
        const { event_id: eventId } = await client.sendEvent(roomId, "m.reaction", content);
        return { event_id: eventId };
    },

    async device_status(args) {
        const status = await requireClient()
            .getCrypto()
            .getDeviceVerificationStatus(need(args, "user_id"), need(args, "device_id"));
        if (!status) return null;
        return {
            signedByOwner: status.signedByOwner,
            crossSigningVerified: status.crossSigningVerified,
            localVerified: status.localVerified,
            isVerified: status.isVerified(),
        };
    },

    async user_devices(args) {
        const user = need(args, "user_id");
        const map = await requireClient().getCrypto().getUserDeviceInfo([user], true);
        return [...(map.get(user)?.keys() ?? [])].sort();
    },

    async cross_signing_key(args) {
        const c = requireClient();
        const user = need(args, "user_id");
        await c.getCrypto().getUserDeviceInfo([user], true); // fetches the identity too
        const keys = await c.getCrypto().getUserCrossSigningKeys(user);
        const master = keys?.master_key;
        if (!master) return null;
        return Object.values(master.keys)[0] ?? null;
    },

    async user_status(args) {
        const c = requireClient();
        const user = need(args, "user_id");
        await c.getCrypto().getUserDeviceInfo([user], true);
        const status = await c.getCrypto().getUserVerificationStatus(user);
        return {
            known: status.known,
            isVerified: status.isVerified(),
            isCrossSigningVerified: status.isCrossSigningVerified(),
            wasCrossSigningVerified: status.wasCrossSigningVerified(),
            needsUserApproval: status.needsUserApproval,
        };
    },

    async stop() {
        shutdown(0);
        return null;
    },
};

let stopping = false;
function shutdown(code) {
    if (stopping) return;
    stopping = true;
    try {
        client?.stopClient();
    } catch (err) {
        diag("stopClient failed", err);
    }
    // Let the response line flush before leaving.
    setImmediate(() => process.stdout.write("", () => process.exit(code)));
}

async function handle(line) {
    if (!line.trim()) return;
    let request;
    try {
        request = JSON.parse(line);
    } catch (err) {
        diag("bad request line", line);
        return;
    }
    const { id, cmd, ...args } = request;
    const command = Object.hasOwn(commands, cmd) ? commands[cmd] : null;
    if (!command) {
        write({ id, ok: false, error: `unknown command: ${cmd}` });
        return;
    }
    try {
        const result = await command(args);
        write({ id, ok: true, result: result ?? null });
    } catch (err) {
        const message = err?.data?.error ?? err?.message ?? String(err);
        write({ id, ok: false, error: `${cmd}: ${message}` });
    }
}

process.on("unhandledRejection", (err) => diag("unhandled rejection", err, err?.stack ?? ""));
process.on("SIGTERM", () => shutdown(0));

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => void handle(line));
rl.on("close", () => shutdown(0));
