/**
 * The least client the KME simulator tests need: one HTTPS request with a client certificate and
 * the pinned CA, over a fresh connection (so each call is a full mutual-TLS handshake), returning
 * status, headers and body. Not a library: the real ETSI 014 client is drivers/qkd/etsi014/.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';

export interface Identity {
  ca: string;
  /** Absent: connect without a client certificate. */
  cert?: string;
  key?: string;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** Parsed body, or undefined when the body is empty or not JSON. */
  json: unknown;
}

/** Loads `<name>.pem` / `<name>.key` from `dir` and the CA from `caPath` (default `<dir>/ca.pem`). */
export function identity(dir: string, name: string, caPath = join(dir, 'ca.pem')): Identity {
  return {
    ca: readFileSync(caPath, 'utf8'),
    cert: readFileSync(join(dir, `${name}.pem`), 'utf8'),
    key: readFileSync(join(dir, `${name}.key`), 'utf8'),
  };
}

export interface CallOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Sent as JSON with Content-Type application/json, unless `rawBody` is given. */
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
  /** Override TLS options (e.g. maxVersion) for negative tests. */
  tls?: Record<string, unknown>;
}

export function call(
  baseUrl: string,
  who: Identity | null,
  path: string,
  options: CallOptions = {},
): Promise<Answer> {
  const method =
    options.method ?? (options.body !== undefined || options.rawBody !== undefined ? 'POST' : 'GET');
  const payload =
    options.rawBody !== undefined
      ? Buffer.from(options.rawBody)
      : options.body !== undefined
        ? Buffer.from(JSON.stringify(options.body))
        : undefined;
  const headers: Record<string, string | number> = { ...options.headers };
  if (options.body !== undefined && options.rawBody === undefined)
    headers['content-type'] = 'application/json';
  if (payload !== undefined) headers['content-length'] = payload.length;
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, baseUrl),
      {
        method,
        agent: false,
        headers,
        ca: who?.ca,
        cert: who?.cert,
        key: who?.key,
        timeout: 10_000,
        ...options.tls,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text.length > 0 ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}
