/**
 * Types only: the ETSI GS QKD 014 v1.1.1 §6 data formats as they appear on the wire (field names
 * exactly as in the standard), the limits a KME advertises, and the key supply that feeds a
 * KME pair.
 */

/** §6.1 Status: one definition, shared with the driver (drivers/qkd/etsi014/schemas.ts). */
export type { EtsiStatus } from '../../drivers/qkd/etsi014/schemas.js';

/** §6.2 Key request. Every field optional. */
export interface EtsiKeyRequest {
  number?: number;
  size?: number;
  additional_slave_SAE_IDs?: string[];
  extension_mandatory?: Record<string, unknown>[];
  extension_optional?: Record<string, unknown>[];
}

/** §6.3 Key container. `key` is standard Base64 (RFC 4648 §4) of exactly `size / 8` bytes. */
export interface EtsiKeyContainer {
  keys: Array<{
    key_ID: string;
    key_ID_extension?: Record<string, unknown>;
    key: string;
    key_extension?: Record<string, unknown>;
  }>;
  key_container_extension?: Record<string, unknown>;
}

/** §6.4 Key IDs. */
export interface EtsiKeyIds {
  key_IDs: Array<{ key_ID: string; key_ID_extension?: Record<string, unknown> }>;
  key_IDs_extension?: Record<string, unknown>;
}

/** §6.5 Error. */
export interface EtsiError {
  message: string;
  details?: Record<string, unknown>[];
}

/** The limits a KME advertises in its Status (all sizes in bits). */
export interface KmeLimits {
  /** Capacity of the pool, in keys of the pool unit size (`key_size`). Default 1000. */
  maxKeyCount: number;
  /** Default 128. */
  maxKeyPerRequest: number;
  /** Multiple of 8. Default 64. */
  minKeySize: number;
  /** Multiple of 8. Default 8192 (32 pool units of 256 bits). */
  maxKeySize: number;
  /** How many `additional_slave_SAE_IDs` a request may carry; 0 = multicast not supported. Default 0. */
  maxSaeIdCount: number;
}

/** One key of a block from the link: identical ID and bytes at both ends. */
export interface LinkKey {
  /** A random UUID chosen by the link, never derived from the key bytes. */
  keyId: string;
  key: Uint8Array;
}

/**
 * Anything that emits blocks of link keys: the BB84 `LinkKeyGenerator`, or
 * {@link ManualKeySupply} in tests. One supply feeds both KMEs of a pair with the same array;
 * listeners treat the array and the bytes as read-only (pools copy them). `start`/`stop`, when
 * present, are called by the pair.
 */
export interface KeySupply {
  on(event: 'keys', listener: (keys: readonly LinkKey[]) => void): unknown;
  off(event: 'keys', listener: (keys: readonly LinkKey[]) => void): unknown;
  start?(): void;
  stop?(): void;
  /** Stop producing: both pools are full. The pair calls `resume()` once both have room again. */
  pause?(): void;
  resume?(): void;
}
