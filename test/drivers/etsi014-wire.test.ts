/** ETSI 014 §6 body checks of the client (drivers/qkd/etsi014/wire.ts), as properties. */
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { QkdError } from '../../drivers/qkd/etsi014/errors.js';
import { keyIdsBody, keyRequestBody, parseKeyContainer } from '../../drivers/qkd/etsi014/wire.js';

/** Every array the strict decoder hands out, to check that failed parses wipe them. */
const decoded = vi.hoisted((): Uint8Array[] => []);
vi.mock('../../drivers/qkd/etsi014/base64.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../drivers/qkd/etsi014/base64.js')>();
  return {
    decodeBase64Strict: (text: string) => {
      const out = actual.decodeBase64Strict(text);
      if (out !== undefined) decoded.push(out);
      return out;
    },
  };
});

const keyArb = (bytes: number) =>
  fc.record({ key_ID: fc.uuid(), key: fc.uint8Array({ minLength: bytes, maxLength: bytes }) });

const containerArb = fc
  .integer({ min: 1, max: 64 })
  .chain((sizeBytes) =>
    fc
      .uniqueArray(keyArb(sizeBytes), { minLength: 1, maxLength: 8, selector: (k) => k.key_ID.toLowerCase() })
      .map((keys) => ({ sizeBits: sizeBytes * 8, keys })),
  );

const wireOf = (keys: Array<{ key_ID: string; key: Uint8Array }>) => ({
  keys: keys.map((k) => ({ key_ID: k.key_ID, key: Buffer.from(k.key).toString('base64') })),
});

function protocolFailure(run: () => unknown): QkdError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(QkdError);
    expect((error as QkdError).kind).toBe('protocol');
    return error as QkdError;
  }
  throw new Error('expected a protocol error');
}

describe('parseKeyContainer', () => {
  it('returns exactly the keys of a well-formed container', () => {
    fc.assert(
      fc.property(containerArb, ({ sizeBits, keys }) => {
        const got = parseKeyContainer(wireOf(keys), {
          operation: 'enc_keys',
          kmeId: 'kme-a',
          count: keys.length,
          sizeBits,
        });
        expect(got.map((k) => k.keyId)).toEqual(keys.map((k) => k.key_ID));
        expect(got.map((k) => Buffer.from(k.key).toString('hex'))).toEqual(
          keys.map((k) => Buffer.from(k.key).toString('hex')),
        );
      }),
    );
  });

  it('dec_keys: returns the asked IDs in the asked order, whatever the KME order', () => {
    fc.assert(
      fc.property(
        containerArb.chain((c) =>
          fc.shuffledSubarray(c.keys, { minLength: c.keys.length }).map((s) => ({ ...c, s })),
        ),
        ({ keys, s }) => {
          const asked = keys.map((k) => k.key_ID);
          const got = parseKeyContainer(wireOf(s), { operation: 'dec_keys', kmeId: 'kme-b', keyIds: asked });
          expect(got.map((k) => k.keyId)).toEqual(asked);
        },
      ),
    );
  });

  it('rejects a container with one key a byte too long or short, and names no key bytes', () => {
    fc.assert(
      fc.property(containerArb, fc.nat(), fc.boolean(), ({ sizeBits, keys }, which, longer) => {
        const i = which % keys.length;
        const bad = keys.map((k, j) =>
          j !== i ? k : { ...k, key: longer ? Uint8Array.from([...k.key, 0]) : k.key.subarray(1) },
        );
        const wire = wireOf(bad);
        const e = protocolFailure(() =>
          parseKeyContainer(wire, { operation: 'enc_keys', kmeId: 'kme-a', count: keys.length, sizeBits }),
        );
        for (const k of wire.keys) if (k.key.length >= 8) expect(e.message).not.toContain(k.key);
      }),
    );
  });

  it('rejects a count other than asked', () => {
    fc.assert(
      fc.property(containerArb, fc.integer({ min: 1, max: 3 }), ({ sizeBits, keys }, extra) => {
        protocolFailure(() =>
          parseKeyContainer(wireOf(keys), {
            operation: 'enc_keys',
            kmeId: 'kme-a',
            count: keys.length + extra,
            sizeBits,
          }),
        );
      }),
    );
  });

  it('wipes the keys it already decoded when a later entry is bad', () => {
    decoded.length = 0;
    const good = Buffer.from(Uint8Array.from({ length: 32 }, (_, i) => i + 1)).toString('base64');
    const body = {
      keys: [
        { key_ID: '11111111-1111-4111-8111-111111111111', key: good },
        { key_ID: '22222222-2222-4222-8222-222222222222', key: good.slice(4) },
      ],
    };
    protocolFailure(() =>
      parseKeyContainer(body, { operation: 'enc_keys', kmeId: 'kme-a', count: 2, sizeBits: 256 }),
    );
    expect(decoded.length).toBeGreaterThanOrEqual(1);
    for (const bytes of decoded) expect(bytes.every((b) => b === 0)).toBe(true);
  });
});

describe('request bodies', () => {
  it('Key request uses the §6.2 names and omits absent fields', () => {
    expect(keyRequestBody({})).toEqual({});
    expect(keyRequestBody({ number: 2, additionalSlaveSaeIds: ['x'] })).toEqual({
      number: 2,
      additional_slave_SAE_IDs: ['x'],
    });
  });

  it('Key IDs uses the §6.4 names', () => {
    expect(keyIdsBody(['a', 'b'])).toEqual({ key_IDs: [{ key_ID: 'a' }, { key_ID: 'b' }] });
  });
});
