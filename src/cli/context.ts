import { resolve } from 'node:path';
import { QkmClient } from '../client/client.js';
import { fileExists, readTokenFile, tokenFile } from '../core/datadir.js';

/** Options every client command accepts. */
export interface GlobalOptions {
  url?: string;
  data?: string;
  token?: string;
  tokenFile?: string;
  json?: boolean;
  /** No progress or commentary on stderr (errors are still written). */
  quiet?: boolean;
  /** Progress on stderr even when it is not a terminal. */
  progress?: boolean;
}

export function dataDirOf(opts: GlobalOptions): string {
  return resolve(opts.data ?? process.env.QKM_DATA ?? '.qkm');
}

export function urlOf(opts: GlobalOptions): string {
  if (opts.url) return opts.url;
  if (process.env.QKM_URL) return process.env.QKM_URL;
  return `http://127.0.0.1:${process.env.QKM_PORT ?? '7300'}`;
}

/**
 * Token precedence: --token, QKM_TOKEN, --token-file, then the data dir's token files
 * (`admin` for admin commands when present, else `default`).
 */
export async function tokenOf(opts: GlobalOptions, admin = false): Promise<string> {
  if (opts.token) return opts.token;
  if (process.env.QKM_TOKEN) return process.env.QKM_TOKEN;
  if (opts.tokenFile) return readTokenFile(resolve(opts.tokenFile));
  const dir = dataDirOf(opts);
  const candidates = admin ? ['admin', 'default'] : ['default', 'admin'];
  for (const name of candidates) {
    const f = tokenFile(dir, name);
    if (await fileExists(f)) return readTokenFile(f);
  }
  throw new CliError(
    `no token: pass --token or --token-file, or start qkm once so that ${tokenFile(dir, 'default')} exists`,
  );
}

export async function clientOf(opts: GlobalOptions, admin = false): Promise<QkmClient> {
  return new QkmClient({ url: urlOf(opts), token: await tokenOf(opts, admin) });
}

/**
 * The CLI's exit codes (README, "Exit codes"). Scripts branch on them, so they are part of the
 * interface: never renumber one.
 */
export const EXIT = {
  OK: 0,
  /** The command ran and failed: the appliance refused it, a test failed, a file is missing. */
  FAILED: 1,
  /** The command line is wrong (unknown option, bad value). */
  USAGE: 2,
  /** `qkm status`: the appliance answered and is degraded (its reasons are printed). */
  DEGRADED: 3,
  /** The appliance could not be reached (nothing listening, timeout, not a qkm answer). */
  UNREACHABLE: 4,
} as const;

/**
 * An error the CLI reports as one line (or, with `--json`, as `{error, message}` on stderr).
 * `code` is the `error` field: `USAGE` for exit code 2, else `FAILED` unless named.
 */
export class CliError extends Error {
  readonly code: string;
  constructor(
    message: string,
    readonly exitCode: number = EXIT.FAILED,
    code?: string,
  ) {
    super(message);
    this.name = 'CliError';
    this.code = code ?? (exitCode === EXIT.USAGE ? 'USAGE' : 'FAILED');
  }
}

export function print(opts: GlobalOptions, value: unknown, human: () => string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

let longRunning = false;
/** Marks the current command as a server that runs until stopped. */
export function setLongRunning(): void {
  longRunning = true;
}
export function isLongRunning(): boolean {
  return longRunning;
}
