#!/usr/bin/env node
import { isLongRunning } from './context.js';
import { main } from './qkm.js';

main(process.argv).then((code) => {
  process.exitCode = code;
  // One-shot commands exit as soon as their output is written, rather than waiting for
  // pooled HTTP connections to time out; `start`, `sim kme` and `demo --hold` keep running.
  if (!isLongRunning()) process.stdout.write('', () => process.exit(code));
});
