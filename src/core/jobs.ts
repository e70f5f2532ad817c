import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';

/**
 * The one scheduler of periodic work: cron-scheduled (key expiry sweep, the entropy service's
 * DRBG reseed) and fixed interval (QKD link poll). Every job is named, never overlaps itself (a
 * tick that finds the previous run still going is skipped), logs its failure (message only) and
 * keeps its schedule, and stops with `stop()`. Timers are unref'd: a job never keeps the process
 * alive. Each owner (the appliance, an `EntropyService`) keeps its own scheduler and stops it
 * with itself. Nothing else in `src` imports node-cron or calls `setInterval`
 * (test/core/layering.test.ts).
 */
export type JobFn = () => Promise<void>;

/** Where failed runs are reported (a pino logger will do). */
export type JobLogger = Pick<Logger, 'error'>;

/** Whether `expression` is a cron expression `cron()` accepts (5 fields, or 6 with seconds). */
export function isValidCron(expression: string): boolean {
  return cron.validate(expression);
}

interface Job {
  name: string;
  running: boolean;
  stop(): void;
}

export class JobScheduler {
  private readonly jobs: Job[] = [];

  /** Without a logger, failed runs are not reported (for owners whose jobs cannot fail). */
  constructor(private readonly logger?: JobLogger) {}

  /** Runs `fn` on a node-cron schedule (e.g. `*\/5 * * * *`); RangeError for an invalid one. */
  cron(name: string, expression: string, fn: JobFn): void {
    if (!cron.validate(expression)) throw new RangeError(`${name}: invalid cron expression: ${expression}`);
    // destroy(), not stop(): a stopped task stays in node-cron's registry for the process' life.
    const job: Job = { name, running: false, stop: () => void task.destroy() };
    const task: ScheduledTask = cron.schedule(expression, () => this.run(job, fn), { name });
    task.unref();
    this.jobs.push(job);
  }

  /** Runs `fn` every `ms` milliseconds, and once right away when `runNow`. */
  every(name: string, ms: number, fn: JobFn, opts: { runNow?: boolean } = {}): void {
    const timer = setInterval(() => void this.run(job, fn), ms);
    timer.unref();
    const job: Job = { name, running: false, stop: () => clearInterval(timer) };
    this.jobs.push(job);
    if (opts.runNow) void this.run(job, fn);
  }

  /** Names of the scheduled jobs (status, tests). */
  names(): string[] {
    return this.jobs.map((j) => j.name);
  }

  stop(): void {
    for (const job of this.jobs.splice(0)) job.stop();
  }

  private async run(job: Job, fn: JobFn): Promise<void> {
    if (job.running) return;
    job.running = true;
    try {
      await fn();
    } catch (err) {
      this.logger?.error(
        { job: job.name, err: { message: (err as Error).message } },
        'background job failed',
      );
    } finally {
      job.running = false;
    }
  }
}
