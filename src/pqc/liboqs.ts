import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type PqcBackend, PqcUnsupported } from './interface.js';

/**
 * @oqs/liboqs-js 0.15.1 (Open Quantum Safe's WebAssembly build of liboqs), driven through its
 * Emscripten modules directly rather than through the package's wrapper classes. Why: the
 * wrappers copy the secret key into the WebAssembly heap and `free` it without zeroing, so
 * every signature would leave a copy of the node's ML-DSA secret key in linear memory until the
 * allocator happens to reuse the block. Here every heap buffer that held a secret (secret keys,
 * shared secrets) is released with `OQS_MEM_secure_free`, which zeroes it first (liboqs
 * `src/common/common.h`). What stays out of reach: liboqs' own stack frames inside the module.
 *
 * What the build does not expose: ML-DSA context strings, derandomised key generation and
 * encapsulation (see interface.ts). Those calls throw PqcUnsupported; src/pqc/index.ts routes
 * them to noble.
 */

const DSA = { publicKey: 1952, secretKey: 4032, signature: 3309 } as const;
const KEM = { publicKey: 1184, secretKey: 2400, cipherText: 1088, sharedSecret: 32 } as const;

/** The part of an Emscripten module of liboqs-js that qkm calls. */
interface OqsModule {
  HEAPU8: Uint8Array;
  _malloc(n: number): number;
  _free(p: number): void;
  _OQS_init(): void;
  _OQS_MEM_secure_free(p: number, n: number): void;
  lengthBytesUTF8(s: string): number;
  stringToUTF8(s: string, p: number, max: number): void;
  setValue(p: number, v: number, type: string): void;
  getValue(p: number, type: string): number;
  _OQS_SIG_new?(name: number): number;
  _OQS_SIG_free?(sig: number): void;
  _OQS_SIG_sign?(sig: number, out: number, outLen: number, m: number, mLen: number, sk: number): number;
  _OQS_SIG_verify?(sig: number, m: number, mLen: number, s: number, sLen: number, pk: number): number;
  _OQS_KEM_new?(name: number): number;
  _OQS_KEM_free?(kem: number): void;
  _OQS_KEM_encaps?(kem: number, ct: number, ss: number, pk: number): number;
  _OQS_KEM_decaps?(kem: number, ss: number, ct: number, sk: number): number;
}

const unsupported = (what: string): never => {
  throw new PqcUnsupported(`liboqs-js 0.15.1 does not expose ${what}; qkm uses noble for it`);
};

/** The package's `dist/<name>.min.js`: not in its `exports` map, so found on the resolution paths. */
function distModule(name: string): string {
  const require = createRequire(import.meta.url);
  for (const dir of require.resolve.paths('@oqs/liboqs-js') ?? []) {
    const file = join(dir, '@oqs', 'liboqs-js', 'dist', `${name}.min.js`);
    if (existsSync(file)) return pathToFileURL(file).href;
  }
  throw new Error(`@oqs/liboqs-js: dist/${name}.min.js not found`);
}

async function instantiate(name: string, algorithm: string, make: 'sig' | 'kem') {
  const factory = ((await import(distModule(name))) as { default: () => Promise<OqsModule> }).default;
  const mod = await factory();
  mod._OQS_init();
  const len = mod.lengthBytesUTF8(algorithm) + 1;
  const namePtr = mod._malloc(len);
  mod.stringToUTF8(algorithm, namePtr, len);
  const handle = make === 'sig' ? mod._OQS_SIG_new!(namePtr) : mod._OQS_KEM_new!(namePtr);
  mod._free(namePtr);
  if (!handle) throw new Error(`liboqs: ${algorithm} is not enabled in this build`);
  return { mod, handle };
}

/** Heap buffers of one call; `secret` ones are zeroed when released. */
class Frame {
  private readonly bufs: { p: number; n: number; secret: boolean }[] = [];
  constructor(private readonly mod: OqsModule) {}
  alloc(n: number, secret = false, from?: Uint8Array): number {
    const p = this.mod._malloc(Math.max(n, 1));
    if (!p) throw new Error('liboqs: out of WebAssembly memory');
    this.bufs.push({ p, n, secret });
    if (from) this.mod.HEAPU8.set(from, p);
    return p;
  }
  read(p: number, n: number): Uint8Array {
    // HEAPU8 is re-read: it is replaced when the memory grows.
    return this.mod.HEAPU8.slice(p, p + n);
  }
  release(): void {
    for (const b of this.bufs) {
      if (b.secret) this.mod._OQS_MEM_secure_free(b.p, b.n);
      else this.mod._free(b.p);
    }
    this.bufs.length = 0;
  }
}

function isBytes(x: unknown, length?: number): x is Uint8Array {
  return x instanceof Uint8Array && (length === undefined || x.length === length);
}

function need(x: unknown, length: number, what: string): asserts x is Uint8Array {
  if (!(x instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
  if (x.length !== length) throw new RangeError(`${what} must be ${length} bytes, got ${x.length}`);
}

/**
 * FIPS 203 §7.2 encapsulation-key check: every 12-bit coefficient of the encoded vector is
 * below q = 3329 (ByteEncode12(ByteDecode12(ek)) = ek). Done here so that a malformed key is
 * refused the same way on both backends, whatever the library does with it.
 */
function kemKeyIsCanonical(ek: Uint8Array): boolean {
  const end = ek.length - 32; // the last 32 bytes are ρ
  for (let i = 0; i < end; i += 3) {
    const a = ek[i]!;
    const b = ek[i + 1]!;
    const c = ek[i + 2]!;
    if ((a | ((b & 0x0f) << 8)) >= 3329 || ((b >> 4) | (c << 4)) >= 3329) return false;
  }
  return true;
}

/** The liboqs backend, plus a view of its WebAssembly heaps for the wiping tests. */
export interface LiboqsBackend extends PqcBackend {
  /** The current linear memories (ML-DSA module, ML-KEM module). Tests only. */
  heaps(): [Uint8Array, Uint8Array];
}

export async function liboqsBackend(): Promise<LiboqsBackend> {
  const dsa = await instantiate('ml-dsa-65', 'ML-DSA-65', 'sig');
  const kem = await instantiate('ml-kem-768', 'ML-KEM-768', 'kem');
  let destroyed = false;
  const alive = () => {
    if (destroyed) throw new Error('the liboqs-wasm PQC backend was destroyed');
  };
  const EMPTY_ONLY = 'ML-DSA context strings (OQS_SIG_sign_with_ctx_str)';
  return {
    name: 'liboqs-wasm',
    mlDsa65: {
      signsWithContext: false,
      seededKeygen: false,
      keygenFromSeed: () => unsupported('seeded ML-DSA key generation'),
      sign: (message, secretKey, context) => {
        alive();
        if (!isBytes(message)) throw new TypeError('message must be a Uint8Array');
        need(secretKey, DSA.secretKey, 'ML-DSA-65 secret key');
        if (!isBytes(context) || context.length > 0) unsupported(EMPTY_ONLY);
        const f = new Frame(dsa.mod);
        try {
          const sig = f.alloc(DSA.signature);
          const sigLen = f.alloc(8);
          dsa.mod.setValue(sigLen, DSA.signature, 'i64');
          const m = f.alloc(message.length, false, message);
          const sk = f.alloc(DSA.secretKey, true, secretKey);
          if (dsa.mod._OQS_SIG_sign!(dsa.handle, sig, sigLen, m, message.length, sk) !== 0) {
            throw new Error('liboqs: ML-DSA-65 signing failed');
          }
          return f.read(sig, dsa.mod.getValue(sigLen, 'i32'));
        } finally {
          f.release();
        }
      },
      verify: (signature, message, publicKey, context) => {
        alive();
        if (!isBytes(context) || context.length > 0) return unsupported(EMPTY_ONLY);
        if (!isBytes(signature, DSA.signature) || !isBytes(message) || !isBytes(publicKey, DSA.publicKey)) {
          return false;
        }
        const f = new Frame(dsa.mod);
        try {
          const m = f.alloc(message.length, false, message);
          const s = f.alloc(signature.length, false, signature);
          const pk = f.alloc(publicKey.length, false, publicKey);
          return dsa.mod._OQS_SIG_verify!(dsa.handle, m, message.length, s, signature.length, pk) === 0;
        } finally {
          f.release();
        }
      },
    },
    mlKem768: {
      derandomisedEncaps: false,
      seededKeygen: false,
      keygenFromSeed: () => unsupported('seeded ML-KEM key generation'),
      encapsulate: (publicKey, m) => {
        alive();
        if (m !== undefined) unsupported('ML-KEM encapsulation with caller randomness');
        need(publicKey, KEM.publicKey, 'ML-KEM-768 public key');
        if (!kemKeyIsCanonical(publicKey)) {
          throw new RangeError('ML-KEM-768 public key fails the FIPS 203 modulus check');
        }
        const f = new Frame(kem.mod);
        try {
          const ct = f.alloc(KEM.cipherText);
          const ss = f.alloc(KEM.sharedSecret, true);
          const pk = f.alloc(KEM.publicKey, false, publicKey);
          if (kem.mod._OQS_KEM_encaps!(kem.handle, ct, ss, pk) !== 0) {
            throw new Error('liboqs: ML-KEM-768 encapsulation failed');
          }
          return { cipherText: f.read(ct, KEM.cipherText), sharedSecret: f.read(ss, KEM.sharedSecret) };
        } finally {
          f.release();
        }
      },
      decapsulate: (cipherText, secretKey) => {
        alive();
        need(cipherText, KEM.cipherText, 'ML-KEM-768 ciphertext');
        need(secretKey, KEM.secretKey, 'ML-KEM-768 secret key');
        const f = new Frame(kem.mod);
        try {
          const ss = f.alloc(KEM.sharedSecret, true);
          const ct = f.alloc(KEM.cipherText, false, cipherText);
          const sk = f.alloc(KEM.secretKey, true, secretKey);
          if (kem.mod._OQS_KEM_decaps!(kem.handle, ss, ct, sk) !== 0) {
            throw new Error('liboqs: ML-KEM-768 decapsulation failed');
          }
          return f.read(ss, KEM.sharedSecret);
        } finally {
          f.release();
        }
      },
    },
    heaps: () => [dsa.mod.HEAPU8, kem.mod.HEAPU8],
    destroy: () => {
      if (destroyed) return;
      destroyed = true;
      dsa.mod._OQS_SIG_free!(dsa.handle);
      kem.mod._OQS_KEM_free!(kem.handle);
    },
  };
}
