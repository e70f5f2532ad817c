/**
 * Progress of long commands (`sources test`, `selftest drbg`, `demo`; the benchmarks have their
 * own, same rules), always on stderr so that stdout stays exactly the result.
 *
 * Shown when stderr is a terminal, as one line rewritten in place; `--progress` shows it anyway
 * (one line per update, for CI logs), `--quiet` never. With `--json` it is off unless
 * `--progress`, and then each update is a JSON line `{"progress": "..."}`, so that stderr stays
 * JSON lines next to the `{error, message}` a failure writes there.
 */
export interface ProgressFlags {
  quiet?: boolean;
  progress?: boolean;
  json?: boolean;
}

export interface Progress {
  /** A new stage ("reading 262144 bytes"): always written. */
  step(message: string): void;
  /**
   * An update within a stage ("65536/262144 bytes"): the first after a step is written, then at
   * most 10 a second on a terminal, one a second otherwise.
   */
  tick(message: string): void;
  /** Clears the in-place line on a terminal; call once the result is about to be printed. */
  done(): void;
}

const SILENT: Progress = { step() {}, tick() {}, done() {} };

export function progressOf(
  flags: ProgressFlags,
  stream: NodeJS.WriteStream = process.stderr,
  now: () => number = () => performance.now(),
): Progress {
  if (flags.quiet) return SILENT;
  const tty = stream.isTTY === true && !flags.json;
  if (!tty && !flags.progress) return SILENT;
  if (flags.json && !flags.progress) return SILENT;
  const interval = tty ? 100 : 1000;
  let lastTick = Number.NEGATIVE_INFINITY;
  let pending = false;
  const write = (message: string) => {
    if (tty) {
      // \r + erase-to-end-of-line: the next update replaces this one.
      stream.write(`\r\x1b[K${message}`);
      pending = true;
    } else if (flags.json) {
      stream.write(`${JSON.stringify({ progress: message })}\n`);
    } else {
      stream.write(`${message}\n`);
    }
  };
  return {
    step(message) {
      lastTick = Number.NEGATIVE_INFINITY;
      write(message);
    },
    tick(message) {
      if (now() - lastTick < interval) return;
      lastTick = now();
      write(message);
    },
    done() {
      if (tty && pending) stream.write('\r\x1b[K');
      pending = false;
    },
  };
}
