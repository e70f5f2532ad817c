import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * `promtool check metrics`, Prometheus's own linter for the exposition format, as CI runs it
 * (`.ci/run` installs Debian's `prometheus`, which ships /usr/bin/promtool). Outside CI a machine
 * without promtool skips the check; under CI=true a missing promtool is a failure, so the check
 * cannot go quietly missing.
 */
export const PROMTOOL = process.env.PROMTOOL ?? '/usr/bin/promtool';

export function promtoolAvailable(): boolean {
  if (existsSync(PROMTOOL)) return true;
  if (process.env.CI === 'true') {
    throw new Error(`${PROMTOOL} is missing: CI must install Debian's prometheus package (see .ci/run)`);
  }
  return false;
}

/** Runs `promtool check metrics` on an exposition text; resolves with its exit code and output. */
export function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => {
      output += String(d);
    });
    child.stderr.on('data', (d) => {
      output += String(d);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}
