import pino, { type DestinationStream, type Logger } from 'pino';

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
