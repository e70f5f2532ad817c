/**
 * The simulator's certificates, checked with node:crypto's own X.509 parser (independent of
 * @peculiar/x509, which made them): layout, key file modes, names, usages and the chain.
 */
import { X509Certificate } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generateForeignCert,
  generateSimCerts,
  issueSimCert,
  type SimCertFiles,
} from '../../simulators/kme/certs.js';

let dir: string;
let files: SimCertFiles;
const load = async (path: string) => new X509Certificate(await readFile(path));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-kme-certs-'));
  files = await generateSimCerts(join(dir, 'certs'));
});

afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('generateSimCerts', () => {
  it('writes ca, kme-a, kme-b, sae-a, sae-b as .pem + .key, keys readable by the owner only', async () => {
    const d = join(dir, 'certs');
    expect(files.ca).toEqual({ cert: join(d, 'ca.pem'), key: join(d, 'ca.key') });
    for (const name of ['kme-a', 'kme-b'])
      expect(files.kmes[name]).toEqual({ cert: join(d, `${name}.pem`), key: join(d, `${name}.key`) });
    for (const name of ['sae-a', 'sae-b'])
      expect(files.saes[name]).toEqual({ cert: join(d, `${name}.pem`), key: join(d, `${name}.key`) });
    for (const f of [files.ca, ...Object.values(files.kmes), ...Object.values(files.saes)]) {
      expect((await stat(f.key)).mode & 0o777).toBe(0o600);
      expect(await readFile(f.key, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
      expect(await readFile(f.cert, 'utf8')).toMatch(/^-----BEGIN CERTIFICATE-----/);
    }
  });

  it('issues KME certificates with the KME ID as CN, localhost/127.0.0.1 SANs, server+client auth', async () => {
    const ca = await load(files.ca.cert);
    expect(ca.ca).toBe(true);
    for (const id of ['kme-a', 'kme-b']) {
      const cert = await load(files.kmes[id]!.cert);
      expect(cert.subject).toBe(`CN=${id}`);
      expect(cert.ca).toBe(false);
      expect(cert.checkIssued(ca)).toBe(true);
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(cert.checkHost('localhost')).toBe('localhost');
      expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
      expect(cert.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
      expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    }
  });

  it('issues SAE certificates with the SAE ID as CN, client auth only', async () => {
    const ca = await load(files.ca.cert);
    for (const id of ['sae-a', 'sae-b']) {
      const cert = await load(files.saes[id]!.cert);
      expect(cert.subject).toBe(`CN=${id}`);
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
      expect(cert.checkHost('localhost')).toBeUndefined();
    }
  });

  it('refuses IDs that are unsafe as file names or that collide', async () => {
    await expect(generateSimCerts(join(dir, 'bad'), { saes: ['../x'] })).rejects.toThrow(TypeError);
    await expect(generateSimCerts(join(dir, 'bad'), { saes: ['a'], kmes: ['a'] })).rejects.toThrow(TypeError);
    await expect(generateSimCerts(join(dir, 'bad'), { saes: ['ca'] })).rejects.toThrow(TypeError);
  });

  it('issueSimCert adds a certificate from the same CA; generateForeignCert one from another CA', async () => {
    const ca = await load(files.ca.cert);
    const extra = await issueSimCert(join(dir, 'certs'), 'sae-z');
    expect((await stat(extra.key)).mode & 0o777).toBe(0o600);
    const z = await load(extra.cert);
    expect(z.subject).toBe('CN=sae-z');
    expect(z.verify(ca.publicKey)).toBe(true);

    const f = await generateForeignCert(join(dir, 'foreign'), 'sae-a');
    const foreignCert = await load(f.cert);
    expect(foreignCert.subject).toBe('CN=sae-a');
    expect(foreignCert.checkIssued(ca)).toBe(false);
    expect(foreignCert.verify(ca.publicKey)).toBe(false);
    expect(foreignCert.verify((await load(f.ca)).publicKey)).toBe(true);
  });
});
