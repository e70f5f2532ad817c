import { randomInt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Etcd3, type IOptions, Range } from 'etcd3';
import { QkmError } from '../core/errors.js';
import { EtcdKeyStore } from '../keys/etcd-store.js';
import { etcdOp } from './etcd-errors.js';
import type { EntriesOptions, RecordStore, StorageBackend } from './interface.js';
import { checkLimit, checkNamespace, checkRecordKey, toJson } from './records.js';

export interface EtcdTlsOptions {
  /** PEM file of the CA that signed the etcd members' certificates. */
  ca: string;
  /** PEM files of this appliance's client certificate and key (mTLS; etcd `--client-cert-auth`). */
  cert?: string;
  key?: string;
}

export interface EtcdBackendOptions {
  /** Client URLs of the etcd members, e.g. `https://10.0.0.1:2379`. */
  endpoints: string[];
  tls?: EtcdTlsOptions;
  /** Key prefix of this qkm deployment inside the cluster (default `qkm/`). */
  prefix?: string;
  /** The 32-byte key-encryption key — the SAME file on every appliance sharing the store. */
  kek: Uint8Array;
  /** Deadline of one etcd request in ms (default 5000): past it a call rejects STORE_UNAVAILABLE. */
  requestTimeoutMs?: number;
}

/**
 * Opens the etcd storage backend: the key store and one record namespace per subsystem under
 * `prefix` (`<prefix>r/<namespace>/<key>`), shared by every appliance configured with the same
 * endpoints, prefix and KEK. Every write is a quorum-committed etcd request; every read is
 * linearizable (served only by a member that has quorum).
 */
export async function openEtcdBackend(options: EtcdBackendOptions): Promise<StorageBackend> {
  const { kek, endpoints } = options;
  if (!(kek instanceof Uint8Array) || kek.length !== 32)
    throw new RangeError('kek must be a 32-byte Uint8Array');
  if (!Array.isArray(endpoints) || endpoints.length === 0)
    throw new TypeError('etcd endpoints must be a non-empty array');
  const prefix = options.prefix ?? 'qkm/';
  if (!/^[A-Za-z0-9_.-]+\/$/.test(prefix))
    throw new TypeError('etcd prefix must be letters, digits, _ . - ending in /');
  const timeout = options.requestTimeoutMs ?? 5000;
  const clientOptions: IOptions = {
    hosts: endpoints,
    dialTimeout: timeout,
    defaultCallOptions: () => ({ deadline: Date.now() + timeout }),
  };
  if (options.tls) {
    const { ca, cert, key } = options.tls;
    if ((cert === undefined) !== (key === undefined))
      throw new TypeError('etcd tls needs both cert and key, or neither');
    clientOptions.credentials = {
      rootCertificate: await readFile(ca),
      ...(cert !== undefined && key !== undefined
        ? { certChain: await readFile(cert), privateKey: await readFile(key) }
        : {}),
    };
  }
  const client = new Etcd3(clientOptions);
  try {
    const keys = await EtcdKeyStore.open(client, prefix, endpoints, kek);
    return new EtcdBackend(client, prefix, endpoints, keys);
  } catch (err) {
    client.close();
    throw err;
  }
}

class EtcdBackend implements StorageBackend {
  readonly keys: EtcdKeyStore;
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #endpoints: readonly string[];
  readonly #records = new Map<string, EtcdRecordStore<unknown>>();
  readonly #state = { closed: false };
  #closing: Promise<void> | undefined;

  constructor(client: Etcd3, prefix: string, endpoints: readonly string[], keys: EtcdKeyStore) {
    this.#client = client;
    this.#prefix = prefix;
    this.#endpoints = endpoints;
    this.keys = keys;
  }

  records<T>(namespace: string): RecordStore<T> {
    checkNamespace(namespace);
    let store = this.#records.get(namespace);
    if (!store) {
      store = new EtcdRecordStore<unknown>(
        this.#client,
        `${this.#prefix}r/${namespace}/`,
        this.#endpoints,
        this.#state,
      );
      this.#records.set(namespace, store);
    }
    return store as RecordStore<T>;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#state.closed = true;
      await this.keys.close();
      this.#client.close();
    })();
    return this.#closing;
  }
}

/** Attempts of one `update` before it gives up (STORE_UNAVAILABLE, reason contended). */
const UPDATE_ATTEMPTS = 100;

/**
 * One namespace of JSON records. Keys are `<ns prefix><key>`; etcd orders keys by bytes, which
 * is the UTF-8 byte order the contract asks for. `putIfAbsent`, `take` and `update` are
 * single etcd requests or transactions on the key's revision, so they are atomic across every
 * appliance and Provider sharing the cluster, not only within this process.
 */
class EtcdRecordStore<T> implements RecordStore<T> {
  readonly #client: Etcd3;
  readonly #ns: string;
  readonly #endpoints: readonly string[];
  readonly #state: { closed: boolean };

  constructor(client: Etcd3, ns: string, endpoints: readonly string[], state: { closed: boolean }) {
    this.#client = client;
    this.#ns = ns;
    this.#endpoints = endpoints;
    this.#state = state;
  }

  async get(key: string): Promise<T | undefined> {
    this.#assertOpen();
    checkRecordKey(key);
    const json = await this.#op(() => this.#client.get(this.#ns + key).string());
    return json === null ? undefined : (JSON.parse(json) as T);
  }

  async put(key: string, value: T): Promise<void> {
    this.#assertOpen();
    checkRecordKey(key);
    const json = toJson(value);
    await this.#op(() =>
      this.#client
        .put(this.#ns + key)
        .value(json)
        .exec(),
    );
  }

  async putIfAbsent(key: string, value: T): Promise<boolean> {
    this.#assertOpen();
    checkRecordKey(key);
    const json = toJson(value);
    const k = this.#ns + key;
    const res = await this.#op(() =>
      this.#client.if(k, 'Version', '==', 0).then(this.#client.put(k).value(json)).commit(),
    );
    return res.succeeded;
  }

  async del(key: string): Promise<void> {
    this.#assertOpen();
    checkRecordKey(key);
    await this.#op(() =>
      this.#client
        .delete()
        .key(this.#ns + key)
        .exec(),
    );
  }

  /**
   * One DeleteRange with prev_kv: etcd applies deletes one at a time in revision order, and
   * only the delete that removed the key gets it back in prev_kvs (a later one deletes nothing),
   * so exactly one taker wins however many Providers race.
   */
  async take(key: string): Promise<T | undefined> {
    this.#assertOpen();
    checkRecordKey(key);
    const prev = await this.#op(() =>
      this.#client
        .delete()
        .key(this.#ns + key)
        .getPrevious(),
    );
    const kv = prev[0];
    return kv === undefined ? undefined : (JSON.parse(kv.value.toString('utf8')) as T);
  }

  /**
   * Read, compute, then one transaction: put only if the key's mod revision is still the one
   * read (Version == 0 for an absent key), else read it back in the same round trip and retry.
   * Every failed attempt means another writer's commit succeeded, so the callers as a whole
   * always progress; one caller gives up after UPDATE_ATTEMPTS (backing off a little with
   * jitter once contended).
   */
  async update(key: string, fn: (current: T | undefined) => T): Promise<T> {
    this.#assertOpen();
    checkRecordKey(key);
    const k = this.#ns + key;
    const c = this.#client;
    return this.#op(async () => {
      let kv = (await c.get(k).exec()).kvs[0];
      for (let attempt = 1; ; attempt++) {
        const next = toJson(fn(kv === undefined ? undefined : (JSON.parse(kv.value.toString('utf8')) as T)));
        const guard = kv === undefined ? c.if(k, 'Version', '==', 0) : c.if(k, 'Mod', '==', kv.mod_revision);
        const res = await guard.then(c.put(k).value(next)).else(c.get(k)).commit();
        if (res.succeeded) return JSON.parse(next) as T;
        if (attempt >= UPDATE_ATTEMPTS)
          throw new QkmError('STORE_UNAVAILABLE', 'a record kept changing under concurrent writers; retry', {
            details: { backend: 'etcd', reason: 'contended' },
          });
        kv = res.responses[0]?.response_range.kvs[0];
        // Jitter, so writers that keep colliding spread out.
        if (attempt >= 3) await new Promise((r) => setTimeout(r, randomInt(5 * attempt + 1)));
      }
    });
  }

  async entries(prefix = '', options: EntriesOptions = {}): Promise<Array<[string, T]>> {
    this.#assertOpen();
    const limit = checkLimit(options.limit);
    const res = await this.#op(() => {
      const q = this.#client
        .getAll()
        .inRange(Range.prefix(this.#ns + prefix))
        .sort('Key', 'Ascend');
      return (limit === undefined ? q : q.limit(limit)).exec();
    });
    const cut = Buffer.byteLength(this.#ns, 'utf8');
    return res.kvs.map((kv) => [
      kv.key.subarray(cut).toString('utf8'),
      JSON.parse(kv.value.toString('utf8')) as T,
    ]);
  }

  #assertOpen(): void {
    if (this.#state.closed) throw new QkmError('STORE_UNAVAILABLE', 'The storage backend is closed');
  }

  #op<R>(fn: () => Promise<R>): Promise<R> {
    return etcdOp(this.#endpoints, fn);
  }
}
