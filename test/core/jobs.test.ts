import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { JobScheduler } from '../../src/core/jobs.js';
import { createLogger } from '../../src/core/logger.js';

/** The background job scheduler: no overlapping runs, failures logged and survived, stop stops. */
const lines: string[] = [];
const logger = createLogger({
  level: 'error',
  destination: new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  }),
});

afterEach(() => {
  vi.useRealTimers();
  lines.length = 0;
});

describe('JobScheduler', () => {
  it('runs an interval job at once and on every tick, never two runs at a time', async () => {
    vi.useFakeTimers();
    const jobs = new JobScheduler(logger);
    let runs = 0;
    let release: (() => void) | undefined;
    jobs.every(
      'slow',
      1000,
      async () => {
        runs++;
        await new Promise<void>((r) => {
          release = r;
        });
      },
      { runNow: true },
    );
    expect(runs).toBe(1);
    await vi.advanceTimersByTimeAsync(3500); // three ticks while the first run is still going
    expect(runs).toBe(1);
    release!();
    await vi.advanceTimersByTimeAsync(1000);
    expect(runs).toBe(2);
    release!();
    jobs.stop();
    await vi.advanceTimersByTimeAsync(5000);
    expect(runs).toBe(2);
    expect(jobs.names()).toEqual([]);
  });

  it('logs a failing run by job name (message only) and keeps the schedule', async () => {
    vi.useFakeTimers();
    const jobs = new JobScheduler(logger);
    let runs = 0;
    jobs.every('flaky', 100, async () => {
      runs++;
      throw new Error('store closed');
    });
    expect(jobs.names()).toEqual(['flaky']);
    await vi.advanceTimersByTimeAsync(350);
    expect(runs).toBe(3);
    expect(lines).toHaveLength(3);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      job: 'flaky',
      err: { message: 'store closed' },
      msg: 'background job failed',
    });
    jobs.stop();
  });

  it('refuses an invalid cron expression, naming the job', () => {
    const jobs = new JobScheduler(logger);
    expect(() => jobs.cron('reseed', 'not cron', async () => undefined)).toThrow(RangeError);
    expect(() => jobs.cron('reseed', 'not cron', async () => undefined)).toThrow(/reseed/);
    expect(jobs.names()).toEqual([]);
  });

  it('without a logger, a failing run is dropped and the schedule kept', async () => {
    vi.useFakeTimers();
    const jobs = new JobScheduler();
    let runs = 0;
    jobs.every('quiet', 100, async () => {
      runs++;
      throw new Error('nobody listens');
    });
    await vi.advanceTimersByTimeAsync(250);
    expect(runs).toBe(2);
    expect(lines).toHaveLength(0);
    jobs.stop();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('schedules cron jobs by expression and stops them', () => {
    const jobs = new JobScheduler(logger);
    jobs.cron('sweep', '*/5 * * * *', async () => undefined);
    expect(jobs.names()).toEqual(['sweep']);
    jobs.stop();
    expect(jobs.names()).toEqual([]);
  });
});
