import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../cli/run-cli.js';

/**
 * The systemd files in firmware-notes/: the unit's exposure as `systemd-analyze security` scores
 * it (offline, the unit file alone) stays at or below 3.0, and the sysusers/tmpfiles entries
 * give the data dir to the `qkm` user only.
 */
const run = promisify(execFile);
const ANALYZE = '/usr/bin/systemd-analyze';
const notes = (f: string) => join(repoRoot, 'firmware-notes', f);

describe('firmware-notes/qkm.service', () => {
  it.skipIf(!existsSync(ANALYZE))('systemd-analyze security scores it at most 3.0', async () => {
    const { stdout } = await run(ANALYZE, ['security', '--offline=true', '--no-pager', notes('qkm.service')]);
    const m = /Overall exposure level for qkm\.service: (\d+\.\d+)/.exec(stdout);
    expect(m, stdout.slice(-400)).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(3.0);
  });

  it('runs as qkm with a private data dir, and does not break V8 (no MemoryDenyWriteExecute)', async () => {
    const unit = await readFile(notes('qkm.service'), 'utf8');
    expect(unit).toMatch(/^User=qkm$/m);
    expect(unit).toMatch(/^Environment=QKM_DATA=\/var\/lib\/qkm /m);
    expect(unit).toMatch(/^ReadWritePaths=\/var\/lib\/qkm$/m);
    expect(unit).not.toMatch(/^MemoryDenyWriteExecute=yes/m);
    expect(await readFile(notes('qkm.sysusers'), 'utf8')).toMatch(/^u qkm - .* \/var\/lib\/qkm /m);
    expect(await readFile(notes('qkm.tmpfiles'), 'utf8')).toMatch(/^d \/var\/lib\/qkm 0700 qkm qkm -$/m);
  });
});
