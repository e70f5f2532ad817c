import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';

/**
 * The appliance's background jobs in one place: cron-scheduled (key expiry sweep) and fixed
 * interval (QKD link poll). Every job is named, never overlaps itself (a tick that finds the
 * previous run still going is skipped), logs its failure (message only) and keeps its schedule,
 * and stops with `stop()`. Timers are unref'd: a job never keeps the process alive.
 * (The entropy service's reseed cron stays inside `EntropyService`, which owns its lifetime.)
 */
export type JobFn = () => Promise<void>;

interface Job {
  name: string;
  running: boolean;
  stop(): void;
}

export class JobScheduler {
  private readonly jobs: Job[] = [];

  constructor(private readonly logger: Logger) {}

  /** Runs `fn` on a node-cron schedule (e.g. `*\/5 * * * *`). */
  cron(name: string, expression: string, fn: JobFn): void {
    const job: Job = { name, running: false, stop: () => task.stop() };
    const task: ScheduledTask = cron.schedule(expression, () => this.run(job, fn));
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
      this.logger.error({ job: job.name, err: { message: (err as Error).message } }, 'background job failed');
    } finally {
      job.running = false;
    }
  }
}
