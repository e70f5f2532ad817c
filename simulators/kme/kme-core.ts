/**
 * The logic of one KME of a pair, without HTTP: Status, Get key (enc_keys) and Get key with key
 * IDs (dec_keys) for the SAE API, and the two KME-to-KME operations.
 *
 * Who decides which keys go where: both KMEs hold the same pool (the link feeds both), so two
 * masters asking at once on either side could pick the same unit. To rule that out, one KME of
 * the pair — the *primary* (kme-a by default) — makes every allocation:
 * - master on the primary: it takes the oldest units of its pool, tells the secondary to
 *   `assign` those unit IDs to the slave, and only then answers the master (if the secondary
 *   cannot be reached, the units go back to the pool and the master gets 503);
 * - master on the secondary: the secondary asks the primary to `allocate`; the primary takes the
 *   units and holds the keys for its slave, and returns the unit IDs, which the secondary then
 *   takes out of its own pool to answer the master.
 * JavaScript runs one request at a time between awaits, so each take is atomic.
 */
import { randomUUID } from 'node:crypto';
import {
  badRequest,
  EtsiHttpError,
  QKM_MESSAGES,
  SPEC_MESSAGES,
  unauthorized,
  unavailable,
} from './errors.js';
import {
  type ComposedKey,
  composeKey,
  type KeyAssignment,
  KeyPool,
  type PoolUnit,
  unitsPerKey,
} from './pool.js';
import type { EtsiKeyContainer, EtsiStatus, KmeLimits } from './types.js';
import type { ParsedKeyRequest } from './validate.js';

/** KME-to-KME: the primary tells the secondary which units now belong to which slave(s). */
export interface AssignMessage {
  master_SAE_ID: string;
  slave_SAE_IDs: string[];
  keys: KeyAssignment[];
  /**
   * Keys that are exactly one whole unit each (key_ID = unit ID, size = the link's key size):
   * the common case, sent as bare IDs because this message sits inside every enc_keys and
   * 32 objects cost 3× the JSON work of 32 strings. Optional; `keys` carries all other keys.
   */
  unit_key_IDs?: string[];
}

/** KME-to-KME: the secondary asks the primary to allocate keys for one of its masters. */
export interface AllocateMessage {
  master_SAE_ID: string;
  slave_SAE_IDs: string[];
  number: number;
  size: number;
}

export interface AllocateAnswer {
  keys: KeyAssignment[];
}

/**
 * The other KME, as seen from this one. Rejections are {@link EtsiHttpError}s (relayed to the
 * SAE as they are); transport failures are any other error (the SAE gets 503).
 */
export interface PeerChannel {
  assign(message: AssignMessage): Promise<void>;
  allocate(message: AllocateMessage): Promise<AllocateAnswer>;
}

export interface KmeCoreOptions {
  id: string;
  /** SAEs this KME serves (IDs as in their certificates' CN). */
  saes: readonly string[];
  peerId: string;
  /** SAEs the peer KME serves: the only valid slaves for masters here. */
  peerSaes: readonly string[];
  role: 'primary' | 'secondary';
  /** Size of a link key (pool unit) in bits; the advertised `key_size`. */
  unitBits: number;
  limits: KmeLimits;
}

export interface KmeCounters {
  keysDelivered: number;
  bitsDelivered: number;
  keysFetchedBySlaves: number;
  unauthorizedRequests: number;
}

const OUT_OF_STEP = 'key pools out of step: assigned unit not in pool';

/** The unit IDs a secondary reported missing in an out-of-step refusal of `assign`. */
function missingUnits(err: unknown): string[] {
  if (!(err instanceof EtsiHttpError) || err.message !== OUT_OF_STEP) return [];
  const list = err.details?.[0]?.missing_unit_IDs;
  return Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string') : [];
}

/** The KME-to-KME description of one key; whole-unit keys omit `unit_IDs` (it would just repeat `key_ID`). */
function assignment(
  keyId: string,
  units: readonly PoolUnit[],
  size: number,
  unitBits: number,
): KeyAssignment {
  return units.length === 1 && size === unitBits && units[0]!.id === keyId
    ? { key_ID: keyId, size }
    : { key_ID: keyId, unit_IDs: units.map((u) => u.id), size };
}

function unitIdsOf(k: KeyAssignment): string[] {
  return k.unit_IDs ?? [k.key_ID];
}

const toContainer = (keys: readonly ComposedKey[]): EtsiKeyContainer => ({
  keys: keys.map((k) => {
    const key = k.key.toString('base64');
    k.key.fill(0);
    return { key_ID: k.keyId, key };
  }),
});

export class KmeCore {
  readonly id: string;
  readonly saes: ReadonlySet<string>;
  readonly peerId: string;
  readonly peerSaes: ReadonlySet<string>;
  readonly role: 'primary' | 'secondary';
  readonly limits: KmeLimits;
  readonly pool: KeyPool;
  readonly counters: KmeCounters = {
    keysDelivered: 0,
    bitsDelivered: 0,
    keysFetchedBySlaves: 0,
    unauthorizedRequests: 0,
  };
  private peer: PeerChannel | undefined;

  constructor(options: KmeCoreOptions) {
    const { limits, unitBits } = options;
    if (limits.minKeySize % 8 !== 0 || limits.maxKeySize % 8 !== 0 || limits.minKeySize < 8) {
      throw new RangeError('min_key_size and max_key_size must be positive multiples of 8');
    }
    if (limits.minKeySize > unitBits || limits.maxKeySize < unitBits) {
      throw new RangeError('key_size must lie within [min_key_size, max_key_size]');
    }
    this.id = options.id;
    this.saes = new Set(options.saes);
    this.peerId = options.peerId;
    this.peerSaes = new Set(options.peerSaes);
    this.role = options.role;
    this.limits = { ...limits };
    this.pool = new KeyPool(unitBits, limits.maxKeyCount);
  }

  connectPeer(peer: PeerChannel): void {
    this.peer = peer;
  }

  get keySize(): number {
    return this.pool.unitBits;
  }

  /** True if `saeId` may use this KME's SAE API (else 401). */
  serves(saeId: string): boolean {
    return this.saes.has(saeId);
  }

  /** §5.2 Get status, asked by `caller` about its link to `slave`. */
  status(caller: string, slave: string): EtsiStatus {
    this.checkPeerSae(slave, QKM_MESSAGES.unknownSlave);
    return {
      source_KME_ID: this.id,
      target_KME_ID: this.peerId,
      master_SAE_ID: caller,
      slave_SAE_ID: slave,
      key_size: this.keySize,
      stored_key_count: this.pool.storedCount,
      max_key_count: this.limits.maxKeyCount,
      max_key_per_request: this.limits.maxKeyPerRequest,
      max_key_size: this.limits.maxKeySize,
      min_key_size: this.limits.minKeySize,
      max_SAE_ID_count: this.limits.maxSaeIdCount,
    };
  }

  /** §5.3 Get key: new keys for `master` (the caller) shared with `slave` and any additional slaves. */
  async encKeys(master: string, slave: string, request: ParsedKeyRequest): Promise<EtsiKeyContainer> {
    this.checkPeerSae(slave, QKM_MESSAGES.unknownSlave);
    for (const extra of request.additionalSlaves) {
      if (extra === slave) throw badRequest('additional_slave_SAE_IDs shall not repeat slave_SAE_ID');
      this.checkPeerSae(extra, 'unknown SAE in additional_slave_SAE_IDs');
    }
    const slaves = [slave, ...request.additionalSlaves];
    const keys =
      this.role === 'primary'
        ? await this.encKeysAsPrimary(master, slaves, request)
        : await this.encKeysAsSecondary(master, slaves, request);
    this.counters.keysDelivered += keys.length;
    this.counters.bitsDelivered += keys.length * request.size;
    return toContainer(keys);
  }

  /** §5.4 Get key with key IDs: `caller` (a slave) fetches keys that `master` obtained for it. */
  decKeys(caller: string, master: string, keyIds: readonly string[]): EtsiKeyContainer {
    this.checkPeerSae(master, QKM_MESSAGES.unknownMaster);
    const result = this.pool.claim(caller, master, keyIds);
    if (!result.ok) {
      if (result.reason === 'unauthorized') throw unauthorized();
      if (result.reason === 'duplicate') throw badRequest('key_IDs contains duplicates');
      throw badRequest(SPEC_MESSAGES.keysNotFound);
    }
    this.counters.keysFetchedBySlaves += result.keys.length;
    return toContainer(result.keys);
  }

  /** KME-to-KME, on the secondary: hold the units the primary assigned for our slave(s). */
  handleAssign(message: AssignMessage): void {
    if (this.role !== 'secondary') throw badRequest('assign is only accepted by the secondary KME');
    if (!Array.isArray(message?.keys)) throw badRequest('malformed assign message');
    const whole = message.unit_key_IDs ?? [];
    if (!Array.isArray(whole) || !whole.every((id) => typeof id === 'string')) {
      throw badRequest('malformed assign message');
    }
    this.checkSlaves(message.slave_SAE_IDs);
    const perKey = message.keys.map((k) => this.checkAssignment(k));
    if (message.keys.length === 0) {
      // The common case, all whole-unit keys: one pass over the pool, all or nothing.
      if (this.pool.reserveUnits(message.master_SAE_ID, message.slave_SAE_IDs, whole)) return;
      throw unavailable(OUT_OF_STEP, [{ missing_unit_IDs: whole.filter((id) => !this.pool.hasUnit(id)) }]);
    }
    const ids = [...whole, ...message.keys.flatMap((k) => unitIdsOf(k))];
    const units = this.pool.takeByIds(ids);
    if (units === undefined) {
      // Tell the primary which units we lack, so it drops them instead of offering them forever.
      throw unavailable(OUT_OF_STEP, [{ missing_unit_IDs: ids.filter((id) => !this.pool.hasUnit(id)) }]);
    }
    const keys: ComposedKey[] = new Array(whole.length);
    // Whole-unit keys: the unit's buffer is the key, its ID the key ID (as composeKey would do).
    for (let i = 0; i < whole.length; i++) keys[i] = { keyId: units[i]!.id, key: units[i]!.bytes };
    if (keys.length > 0) this.pool.reserve(message.master_SAE_ID, message.slave_SAE_IDs, keys, 1);
    let at = whole.length;
    // One reserve call per other key: sizes (so units per key) may differ within one message.
    message.keys.forEach((k, i) => {
      const mine = units.slice(at, at + perKey[i]!);
      at += perKey[i]!;
      const key = composeKey(mine, k.size, this.keySize, k.key_ID);
      this.pool.reserve(message.master_SAE_ID, message.slave_SAE_IDs, [key], perKey[i]!);
    });
  }

  /** KME-to-KME, on the primary: allocate keys for a master on the secondary and hold them for our slave(s). */
  handleAllocate(message: AllocateMessage): AllocateAnswer {
    if (this.role !== 'primary') throw badRequest('allocate is only accepted by the primary KME');
    if (typeof message !== 'object' || message === null) throw badRequest('malformed allocate message');
    this.checkSlaves(message.slave_SAE_IDs);
    const { number, size } = message;
    if (!Number.isInteger(number) || number < 1 || number > this.limits.maxKeyPerRequest) {
      throw badRequest('allocate: number out of range');
    }
    if (
      !Number.isInteger(size) ||
      size % 8 !== 0 ||
      size < this.limits.minKeySize ||
      size > this.limits.maxKeySize
    ) {
      throw badRequest('allocate: size out of range');
    }
    const perKey = unitsPerKey(size, this.keySize);
    const units = this.takeUnits(number, perKey);
    const assignments: KeyAssignment[] = [];
    const keys: ComposedKey[] = [];
    for (let i = 0; i < number; i++) {
      const mine = units.slice(i * perKey, (i + 1) * perKey);
      const key = composeKey(mine, size, this.keySize);
      keys.push(key);
      assignments.push(assignment(key.keyId, mine, size, this.keySize));
    }
    this.pool.reserve(message.master_SAE_ID, message.slave_SAE_IDs, keys, perKey);
    return { keys: assignments };
  }

  private async encKeysAsPrimary(
    master: string,
    slaves: string[],
    request: ParsedKeyRequest,
  ): Promise<ComposedKey[]> {
    const perKey = unitsPerKey(request.size, this.keySize);
    const units = this.takeUnits(request.number, perKey);
    // Same rule as composeKey: one whole unit keeps the link's UUID, anything else gets a fresh one.
    const wholeUnits = perKey === 1 && request.size === this.keySize;
    const keyIds: string[] = [];
    const assignments: KeyAssignment[] = [];
    if (wholeUnits) {
      for (const u of units) keyIds.push(u.id);
    } else {
      for (let i = 0; i < request.number; i++) {
        const mine = units.slice(i * perKey, (i + 1) * perKey);
        const keyId = randomUUID();
        keyIds.push(keyId);
        assignments.push(assignment(keyId, mine, request.size, this.keySize));
      }
    }
    const message: AssignMessage = { master_SAE_ID: master, slave_SAE_IDs: slaves, keys: assignments };
    if (wholeUnits) message.unit_key_IDs = keyIds;
    try {
      await this.requirePeer().assign(message);
    } catch (err) {
      // The slave cannot get these keys, so the master must not either: back to the pool,
      // untouched — except units the secondary no longer has (e.g. it applied an earlier assign
      // whose answer timed out here), which can never be shared again.
      const missing = new Set(missingUnits(err));
      this.pool.putBack(units.filter((u) => !missing.has(u.id)));
      this.pool.discard(units.filter((u) => missing.has(u.id)));
      throw err instanceof EtsiHttpError && err.status !== 401
        ? unavailable(QKM_MESSAGES.peerUnavailable, [{ peer_message: err.message }])
        : unavailable(QKM_MESSAGES.peerUnavailable);
    }
    if (wholeUnits) return units.map((u) => ({ keyId: u.id, key: u.bytes }));
    return keyIds.map((keyId, i) =>
      composeKey(units.slice(i * perKey, (i + 1) * perKey), request.size, this.keySize, keyId),
    );
  }

  private async encKeysAsSecondary(master: string, slaves: string[], request: ParsedKeyRequest) {
    let answer: AllocateAnswer;
    try {
      answer = await this.requirePeer().allocate({
        master_SAE_ID: master,
        slave_SAE_IDs: slaves,
        number: request.number,
        size: request.size,
      });
    } catch (err) {
      // The primary's 400/503 (e.g. insufficient key material) reach the master as they are.
      if (err instanceof EtsiHttpError && err.status !== 401 && err.status !== 404) throw err;
      throw unavailable(QKM_MESSAGES.peerUnavailable);
    }
    const perKey = answer.keys.map((k) => this.checkAssignment(k));
    if (answer.keys.length !== request.number || answer.keys.some((k) => k.size !== request.size)) {
      throw unavailable(QKM_MESSAGES.internal);
    }
    const units = this.pool.takeByIds(answer.keys.flatMap((k) => unitIdsOf(k)));
    if (units === undefined) throw unavailable('key pools out of step: allocated unit not in pool');
    let at = 0;
    return answer.keys.map((k, i) => {
      const mine = units.slice(at, at + perKey[i]!);
      at += perKey[i]!;
      return composeKey(mine, k.size, this.keySize, k.key_ID);
    });
  }

  /** Takes `number * perKey` units or refuses with 503 and the stored count (never a partial container). */
  private takeUnits(number: number, perKey: number): PoolUnit[] {
    const needed = number * perKey;
    const units = this.pool.takeOldest(needed);
    if (units === undefined) {
      throw unavailable(QKM_MESSAGES.insufficientKeys, [
        { stored_key_count: this.pool.storedCount },
        { requested_key_count: needed },
      ]);
    }
    return units;
  }

  private checkAssignment(k: KeyAssignment): number {
    const perKey = unitsPerKey(k.size, this.keySize);
    if (
      typeof k.key_ID !== 'string' ||
      (k.unit_IDs === undefined
        ? perKey !== 1 || k.size !== this.keySize
        : !Array.isArray(k.unit_IDs) || k.unit_IDs.length !== perKey) ||
      !Number.isInteger(k.size) ||
      k.size % 8 !== 0 ||
      k.size < 8
    ) {
      throw badRequest('malformed key assignment');
    }
    return perKey;
  }

  private checkSlaves(slaves: readonly string[]): void {
    if (!Array.isArray(slaves) || slaves.length === 0 || !slaves.every((s) => this.saes.has(s))) {
      throw badRequest('slave_SAE_IDs must name SAEs of this KME');
    }
  }

  private checkPeerSae(saeId: string, message: string): void {
    if (!this.peerSaes.has(saeId)) throw badRequest(message);
  }

  private requirePeer(): PeerChannel {
    if (this.peer === undefined) throw unavailable(QKM_MESSAGES.peerUnavailable);
    return this.peer;
  }
}
