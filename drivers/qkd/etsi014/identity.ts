/**
 * The KME identity check (ETSI 014 §4: the SAE verifies the KME's certificate *and the KME ID
 * it carries*). Used as `checkServerIdentity`, which Node calls only after the chain has
 * verified against the pinned CA; so a certificate reaching this check is one the CA issued,
 * and the question left is whether it was issued to the KME we mean to talk to.
 */
import type { PeerCertificate } from 'node:tls';

/** The code on the error `kmeIdentityCheck` returns, so the client can classify it as `tls`. */
export const KME_ID_MISMATCH = 'ERR_QKM_KME_ID_MISMATCH';

/**
 * The names a certificate gives its holder: subject CN values and subjectAltName DNS and URI
 * entries. The KME ID is matched exactly against these (no wildcards: a KME ID is an ID, not a
 * host pattern).
 */
export function certificateNames(cert: PeerCertificate): string[] {
  const names: string[] = [];
  const cn = cert.subject?.CN as string | string[] | undefined;
  if (typeof cn === 'string') names.push(cn);
  else if (Array.isArray(cn)) names.push(...cn);
  for (const entry of splitAltNames(cert.subjectaltname ?? '')) {
    const colon = entry.indexOf(':');
    if (colon < 0) continue;
    const type = entry.slice(0, colon);
    if (type === 'DNS' || type === 'URI') names.push(unquote(entry.slice(colon + 1)));
  }
  return names;
}

/**
 * Returns a `checkServerIdentity` that accepts only a certificate naming `kmeId`. The hostname
 * is deliberately not checked: with a private CA pinned as the only trust anchor, the KME ID is
 * the identity, and KMEs are commonly reached by IP address or through port forwards.
 */
export function kmeIdentityCheck(kmeId: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const names = certificateNames(cert);
    if (names.includes(kmeId)) return undefined;
    const error = new Error(
      `KME certificate names ${names.length > 0 ? names.map((n) => JSON.stringify(n)).join(', ') : 'nothing'}, ` +
        `expected KME ID ${JSON.stringify(kmeId)}`,
    ) as Error & { code: string };
    error.code = KME_ID_MISMATCH;
    return error;
  };
}

/** Node joins SAN entries with ", " and quotes entries that themselves contain ", " or quotes. */
function splitAltNames(text: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '"') quoted = !quoted;
    if (!quoted && ch === ',' && text[i + 1] === ' ') {
      out.push(current);
      current = '';
      i++;
      continue;
    }
    current += ch;
  }
  if (current.length > 0) out.push(current);
  return out;
}

function unquote(value: string): string {
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
    try {
      return JSON.parse(value) as string;
    } catch {
      return value;
    }
  }
  return value;
}
