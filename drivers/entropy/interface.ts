/**
 * The entropy-source driver family: types only. Every raw source the appliance can read —
 * a Quantis USB QRNG, a serial TRNG, the OS CSPRNG, the simulators — implements this, and one
 * conformance suite (`test/drivers/entropy-conformance.test.ts`) runs against each of them.
 *
 * Drivers deliver *raw* samples. They do not health-test, condition or credit entropy: the
 * appliance's pipeline does that above this boundary, using the min-entropy the driver
 * *claims* in `info()`. A driver must never substitute another source's bytes for its own.
 */

/** What a factory finds without opening anything. */
export interface EntropySourceDescriptor {
  /** Stable id, unique on this host, e.g. `quantis-usb:1234A567`, `serial-trng:/dev/ttyACM0`, `os`. */
  id: string;
  driver: string;
  /** Human description, e.g. `ID Quantique Quantis USB 4M`. */
  description: string;
  serial?: string;
  path?: string;
  vendorId?: number;
  productId?: number;
  simulated: boolean;
}

export type SampleWidth = 1 | 8;

/** What an open source says about itself. */
export interface EntropySourceInfo {
  id: string;
  driver: string;
  /** `quantum`: a QRNG whose entropy comes from a quantum process; `physical`: another hardware noise source; `os`: the kernel CSPRNG. */
  kind: 'quantum' | 'physical' | 'os';
  simulated: boolean;
  description: string;
  serial?: string;
  firmware?: string;
  /** Width of one raw sample in bits: 8 for byte-oriented sources, 1 for bit-oriented ones. */
  sampleBits: SampleWidth;
  /**
   * Min-entropy per sample (bits, 0 < H ≤ sampleBits) the source is claimed to deliver. Health-test
   * cutoffs (SP 800-90B §4.4) and entropy crediting derive from it; be conservative.
   */
  claimedMinEntropy: number;
  /** Nominal raw output rate in bytes/s, if known. */
  nominalRate?: number;
  /** Driver-specific facts worth showing an operator (board version, module mask, …). */
  details?: Record<string, string | number | boolean>;
}

/** Options for opening a source; drivers accept what applies to them and ignore the rest. */
export interface EntropySourceOpenOptions {
  /** A descriptor id from `list()`, or a serial number / path the driver understands. */
  id?: string;
  serial?: string;
  path?: string;
  /** Override the claimed min-entropy per sample (operator's own assessment). */
  claimedMinEntropy?: number;
}

/**
 * Flag-style error for everything a source can fail with. Exactly one of the flags tells the
 * cause, so callers can tell an unplugged device from a shutdown (`disconnected` vs `canceled`):
 * - `disconnected`: the device went away; a `detach` event is emitted as well;
 * - `canceled`: the read was cut short by `close()` or an abort signal;
 * - `timeout`: the device did not deliver in time (stalled);
 * - otherwise an I/O or protocol error (`io`).
 */
export interface EntropySourceErrorShape extends Error {
  readonly sourceId: string;
  readonly disconnected: boolean;
  readonly canceled: boolean;
  readonly timeout: boolean;
  readonly io: boolean;
}

export interface EntropySourceEvents {
  /** The device was removed. Pending and later reads fail with `disconnected: true`. */
  detach: () => void;
  /** A fault the driver noticed outside a read (e.g. the device reported an error state). */
  error: (err: EntropySourceErrorShape) => void;
}

/** An open source. Contract: */
export interface EntropySource {
  /** Static and semi-static facts; cheap, never throws once open. */
  info(): EntropySourceInfo;
  /**
   * Resolves with exactly `n` raw bytes (n ≥ 1), never fewer. Reads are served in call order.
   * Rejects with an `EntropySourceErrorShape`: `disconnected` if the device is gone, `canceled`
   * if `close()` is called or `signal` aborts while the read is pending, `timeout` if the device
   * stalls longer than the driver's read timeout, `io` otherwise. Reads after `close()` reject
   * with `canceled`.
   */
  read(n: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** Releases the device. Idempotent. Pending reads reject with `canceled: true`. */
  close(): Promise<void>;
  on<E extends keyof EntropySourceEvents>(event: E, listener: EntropySourceEvents[E]): this;
  off<E extends keyof EntropySourceEvents>(event: E, listener: EntropySourceEvents[E]): this;
}

/** One per driver family: finds devices and opens them. */
export interface EntropySourceFactory {
  readonly driver: string;
  /** Devices present now. Never throws for "no device" (returns []); may throw for a broken host setup. */
  list(): Promise<EntropySourceDescriptor[]>;
  /** Opens one device; rejects with an `EntropySourceErrorShape` if it cannot. */
  open(options?: EntropySourceOpenOptions): Promise<EntropySource>;
  /**
   * Optional hot-plug notification: `listener` is called with a descriptor whenever a device of
   * this family appears. Returns an unsubscribe function.
   */
  watch?(listener: (descriptor: EntropySourceDescriptor) => void): () => void;
}
