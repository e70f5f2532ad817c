import type { ContactPolicies } from '../governance/contacts.js';
import { MAX_BATCH, type PrekeyStore } from '../governance/prekeys.js';
import type { ProviderClient } from './client.js';
import { MAX_PREKEY_UPLOAD } from './directory.js';

/**
 * Publishes this node's governed agents to the Provider: for every live agent with an agent id,
 * its endpoint, its contact policy and its prekeys — the last-resort prekey whenever the Provider
 * does not hold the current one, and a fresh batch of one-time prekeys whenever fewer than
 * `lowWater` are left there (back up to `target`). Idempotent: running it twice publishes
 * nothing new the second time. Agents revoked on the node are left at the Provider (the
 * Provider has no removal route yet); their prekeys run out or expire.
 */

export interface ProviderSyncOptions {
  client: Pick<ProviderClient, 'registerAgent' | 'setPolicy' | 'uploadPrekeys' | 'stock'>;
  /** The node's live governed agents. */
  agents: () => Promise<Array<{ aid?: string; revoked?: string }>>;
  contacts: ContactPolicies;
  prekeys: PrekeyStore;
  /** The URL peers reach this node's API at (a function: known once the node listens). */
  endpoint: () => string;
  lowWater: number;
  target: number;
}

export interface SyncedAgent {
  aid: string;
  /** OTKs the Provider held before this run. */
  otksBefore: number;
  /** OTKs made, signed and uploaded in this run. */
  published: number;
  otks: number;
  lastResortUploaded: boolean;
}

export interface SyncReport {
  at: string;
  agents: SyncedAgent[];
}

export class ProviderSync {
  private last: SyncReport | undefined;
  private running: Promise<SyncReport> | undefined;

  constructor(private readonly o: ProviderSyncOptions) {
    if (o.target < 1 || o.lowWater > o.target)
      throw new RangeError('need 1 <= target and lowWater <= target');
  }

  get lastReport(): SyncReport | undefined {
    return this.last;
  }

  /** One publish run; concurrent callers share the run in progress. */
  run(): Promise<SyncReport> {
    this.running ??= this.once().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async once(): Promise<SyncReport> {
    const out: SyncedAgent[] = [];
    for (const a of await this.o.agents()) {
      if (!a.aid || a.revoked) continue;
      out.push(await this.publish(a.aid));
    }
    this.last = { at: new Date().toISOString(), agents: out };
    return this.last;
  }

  private async publish(aid: string): Promise<SyncedAgent> {
    const { client } = this.o;
    await client.registerAgent(aid, this.o.endpoint());
    await client.setPolicy(aid, (await this.o.contacts.get(aid)).rules);
    const stock = await client.stock(aid);
    const lastResort = await this.o.prekeys.lastResort(aid);
    let lastResortUploaded = false;
    let otks = stock.otks;
    if (stock.lastResortExpires !== lastResort.expires) {
      otks = (await client.uploadPrekeys(aid, [lastResort])).otks;
      lastResortUploaded = true;
    }
    let published = 0;
    if (otks < this.o.lowWater) {
      const chunk = Math.min(MAX_BATCH, MAX_PREKEY_UPLOAD);
      for (let missing = this.o.target - otks; missing > 0; missing -= chunk) {
        const batch = await this.o.prekeys.publishBatch(aid, Math.min(chunk, missing));
        otks = (await client.uploadPrekeys(aid, batch)).otks;
        published += batch.length;
      }
    }
    return { aid, otksBefore: stock.otks, published, otks, lastResortUploaded };
  }
}
