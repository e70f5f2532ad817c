/**
 * Certificates for the KME simulator pair, generated at start and never checked in.
 *
 * File layout written by {@link generateSimCerts} into `outDir` (all PEM):
 *
 * | file            | what                                                              | mode |
 * |-----------------|-------------------------------------------------------------------|------|
 * | `ca.pem`        | self-signed CA certificate (CN `qkm-sim-ca`) — the pinned trust anchor | 0644 |
 * | `ca.key`        | CA private key (PKCS#8), kept so more certificates can be issued later | 0600 |
 * | `<kme>.pem`     | KME certificate: CN = KME ID, SAN DNS `localhost` + IP `127.0.0.1`, EKU serverAuth + clientAuth (it is also the client certificate on the KME-to-KME channel) | 0644 |
 * | `<kme>.key`     | its private key (PKCS#8)                                          | 0600 |
 * | `<sae>.pem`     | SAE client certificate: CN = SAE ID, EKU clientAuth               | 0644 |
 * | `<sae>.key`     | its private key (PKCS#8)                                          | 0600 |
 *
 * The KME takes the caller's SAE ID from the subject CN of its client certificate.
 * Keys are ECDSA P-256, signatures ECDSA-SHA-256, via WebCrypto (`node:crypto`).
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
type X509Crypto = Parameters<typeof x509.cryptoProvider.set>[0];

x509.cryptoProvider.set(webcrypto as unknown as X509Crypto);

const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const SIGNING_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** IDs become file names and CNs; keep them to a safe alphabet. */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface SimCertOptions {
  /** SAE IDs to issue client certificates for. Default `['sae-a', 'sae-b']`. */
  saes?: string[];
  /** KME IDs to issue server certificates for. Default `['kme-a', 'kme-b']`. */
  kmes?: string[];
  /** Validity in days from now (backdated one hour for clock skew). Default 365. */
  validityDays?: number;
}

/** Paths of one certificate and its key. */
export interface CertFiles {
  cert: string;
  key: string;
}

/** What {@link generateSimCerts} wrote. */
export interface SimCertFiles {
  dir: string;
  ca: CertFiles;
  kmes: Record<string, CertFiles>;
  saes: Record<string, CertFiles>;
}

/** An issuing CA held in memory. */
interface Issuer {
  cert: x509.X509Certificate;
  privateKey: CryptoKey;
}

function checkId(id: string, what: string): void {
  if (!ID_PATTERN.test(id))
    throw new TypeError(`${what} must match ${ID_PATTERN} (got ${JSON.stringify(id)})`);
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - 3_600_000), notAfter: new Date(now + days * DAY_MS) };
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function writePair(dir: string, name: string, cert: x509.X509Certificate, key: CryptoKey) {
  const files = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  await writeFile(files.cert, cert.toString('pem') + '\n', { mode: 0o644 });
  await writeFile(files.key, await privateKeyPem(key), { mode: 0o600 });
  // writeFile's mode only applies when it creates the file; an existing key keeps its mode otherwise.
  await chmod(files.key, 0o600);
  return files;
}

async function createCa(days: number): Promise<Issuer & { keys: CryptoKeyPair }> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=qkm-sim-ca, O=qkm simulator',
    keys,
    signingAlgorithm: SIGNING_ALG,
    ...validity(days),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, privateKey: keys.privateKey, keys };
}

async function issue(
  issuer: Issuer,
  cn: string,
  kind: 'kme' | 'sae',
  days: number,
): Promise<{ cert: x509.X509Certificate; keys: CryptoKeyPair }> {
  const keys = await generateKeys();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(
      kind === 'kme'
        ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]
        : [x509.ExtendedKeyUsage.clientAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(issuer.cert.publicKey),
  ];
  if (kind === 'kme') {
    extensions.push(
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
      ]),
    );
  }
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${cn}`,
    issuer: issuer.cert.subject,
    publicKey: keys.publicKey,
    signingKey: issuer.privateKey,
    signingAlgorithm: SIGNING_ALG,
    ...validity(days),
    extensions,
  });
  return { cert, keys };
}

/**
 * Creates a fresh CA in `outDir` (created if missing) and issues a certificate for every KME and
 * SAE named. Overwrites files of the same names. See the module comment for the layout.
 */
export async function generateSimCerts(outDir: string, options: SimCertOptions = {}): Promise<SimCertFiles> {
  const saes = options.saes ?? ['sae-a', 'sae-b'];
  const kmes = options.kmes ?? ['kme-a', 'kme-b'];
  const days = options.validityDays ?? 365;
  for (const id of [...saes, ...kmes]) checkId(id, 'KME/SAE ID');
  if (new Set([...saes, ...kmes, 'ca']).size !== saes.length + kmes.length + 1) {
    throw new TypeError('KME and SAE IDs must be distinct from each other and from "ca"');
  }
  await mkdir(outDir, { recursive: true });
  const ca = await createCa(days);
  const out: SimCertFiles = {
    dir: outDir,
    ca: await writePair(outDir, 'ca', ca.cert, ca.privateKey),
    kmes: {},
    saes: {},
  };
  for (const id of kmes) {
    const { cert, keys } = await issue(ca, id, 'kme', days);
    out.kmes[id] = await writePair(outDir, id, cert, keys.privateKey);
  }
  for (const id of saes) {
    const { cert, keys } = await issue(ca, id, 'sae', days);
    out.saes[id] = await writePair(outDir, id, cert, keys.privateKey);
  }
  return out;
}

/**
 * Issues one more certificate from the CA already in `certsDir` (`ca.pem` + `ca.key`), written as
 * `<cn>.pem` / `<cn>.key` there. Tests use it for an SAE the KMEs do not know.
 */
export async function issueSimCert(
  certsDir: string,
  cn: string,
  kind: 'kme' | 'sae' = 'sae',
  validityDays = 365,
): Promise<CertFiles> {
  checkId(cn, 'CN');
  const cert = new x509.X509Certificate(await readFile(join(certsDir, 'ca.pem'), 'utf8'));
  const der = x509.PemConverter.decodeFirst(await readFile(join(certsDir, 'ca.key'), 'utf8'));
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, EC_ALG, false, ['sign']);
  const issued = await issue({ cert, privateKey }, cn, kind, validityDays);
  return writePair(certsDir, cn, issued.cert, issued.keys.privateKey);
}

/**
 * Writes a certificate for `cn` issued by a *different*, throw-away CA into `outDir` (as
 * `foreign-ca.pem` plus `<cn>.pem` / `<cn>.key`). A KME must refuse it at the TLS handshake.
 */
export async function generateForeignCert(
  outDir: string,
  cn: string,
  kind: 'kme' | 'sae' = 'sae',
): Promise<CertFiles & { ca: string }> {
  checkId(cn, 'CN');
  await mkdir(outDir, { recursive: true });
  const ca = await createCa(1);
  const caPath = join(outDir, 'foreign-ca.pem');
  await writeFile(caPath, ca.cert.toString('pem') + '\n');
  const issued = await issue(ca, cn, kind, 1);
  return { ...(await writePair(outDir, cn, issued.cert, issued.keys.privateKey)), ca: caPath };
}
