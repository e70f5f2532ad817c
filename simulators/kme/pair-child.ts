/**
 * Child-process entry of {@link forkKmePair}: runs `runKmePairFromCerts` with the options the
 * parent passed (JSON in argv[2]) and answers the parent's link controls over the IPC channel.
 * Exits when the parent asks it to stop or goes away (the channel closes).
 */
import { runKmePairFromCerts, type RunKmePairOptions } from './pair.js';
import type { KmeChildReply, KmeChildRequest } from './pair-process.js';

const send = (m: KmeChildReply) => process.send?.(m);

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as RunKmePairOptions;
  let running: Awaited<ReturnType<typeof runKmePairFromCerts>>;
  try {
    running = await runKmePairFromCerts(options);
  } catch (err) {
    send({ type: 'failed', message: (err as Error).message ?? String(err) });
    process.exit(1);
  }
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= running.stop().finally(() => process.disconnect?.());
    return stopping;
  };
  process.on('disconnect', () => void stop().finally(() => process.exit(0)));
  process.on('message', async (m: KmeChildRequest) => {
    try {
      if (m.op === 'stopLink') running.generator.stop();
      else if (m.op === 'restartLink') {
        running.generator.resume();
        running.generator.start();
      } else if (m.op === 'stop') {
        send({ type: 'done', id: m.id });
        await stop();
        process.exit(0);
      }
      send({ type: 'done', id: m.id });
    } catch (err) {
      send({ type: 'done', id: m.id, error: (err as Error).message ?? String(err) });
    }
  });
  send({ type: 'ready', description: running.description });
}

void main();
