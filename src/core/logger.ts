import pino, { type Bindings, type ChildLoggerOptions, type DestinationStream, type Logger } from 'pino';

/**
 * The appliance logger. Routes never log bodies; on top of that, any field whose name says it
 * holds secret material is censored wherever it appears, so a future `log.info({ key })` cannot
 * leak. `test/api/log-secrecy.test.ts` runs a full request cycle and scans the output.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  '*.authorization',
  'key',
  '*.key',
  'material',
  '*.material',
  'data',
  '*.data',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'secretKey',
  '*.secretKey',
  'seed',
  '*.seed',
  'bytes',
  '*.bytes',
  'entropyInput',
  '*.entropyInput',
];

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { app: 'qkm' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: {
        // Query strings carry only sizes and flags in qkm; keep the path and those.
        req: (req: { method?: string; url?: string; hostname?: string; ip?: string }) => ({
          method: req.method,
          url: req.url,
          host: req.hostname,
          remoteAddress: req.ip,
        }),
      },
    },
    options.destination,
  );
}

type LogMethod = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * A request logger that builds its pino child only when something is actually logged.
 *
 * Why: fastify makes a child logger (bound to the request id) for every request, and with the
 * wildcard redact paths above pino runs the redaction stringifier over the bindings each time —
 * a measurable share of a small request's cost, though at the default level most requests log
 * nothing. Redaction is untouched: every line still goes through the real pino child.
 *
 * Contract: behaves as `parent.child(bindings)` for the level methods, `child`, `isLevelEnabled`,
 * `bindings` and `level`; a method of a disabled level is a no-op and creates nothing.
 */
export class DeferredChildLogger {
  #child: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly childBindings: Bindings,
  ) {}

  /** The real pino child, created on first use. */
  private get real(): Logger {
    this.#child ??= this.parent.child(this.childBindings);
    return this.#child;
  }

  get level(): string {
    return this.#child?.level ?? this.parent.level;
  }
  set level(level: string) {
    this.real.level = level;
  }

  isLevelEnabled(level: string): boolean {
    return (this.#child ?? this.parent).isLevelEnabled(level);
  }

  private log(method: LogMethod, args: unknown[]): void {
    if (!this.isLevelEnabled(method)) return;
    (this.real[method] as (...a: unknown[]) => void)(...args);
  }

  fatal(...args: unknown[]): void {
    this.log('fatal', args);
  }
  error(...args: unknown[]): void {
    this.log('error', args);
  }
  warn(...args: unknown[]): void {
    this.log('warn', args);
  }
  info(...args: unknown[]): void {
    this.log('info', args);
  }
  debug(...args: unknown[]): void {
    this.log('debug', args);
  }
  trace(...args: unknown[]): void {
    this.log('trace', args);
  }
  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): Logger {
    return this.real.child(bindings, options);
  }

  bindings(): Bindings {
    return this.real.bindings();
  }
}
