/** One QKD link as the status page and metrics show it. */
export interface QkdLinkState {
  peerSaeId: string;
  kmeId: string;
  kmeUrl: string;
  up: boolean;
  storedKeyCount?: number;
  lastError?: string;
  lastErrorAt?: string;
  lastOkAt?: string;
}

/** What one look at a QKD link showed: the KME answered (with its stock), or it did not. */
export type QkdLinkObservation =
  | { answered: true; storedKeyCount: number }
  | { answered: false; error: string };

/**
 * The QKD links as `/v1/status`, the status page and the metrics show them: one entry per peer
 * SAE, updated by the periodic status poll and by every KME answer (or failure) a session sees,
 * so a KME that stops answering degrades the status at the next session, not at the next poll.
 */
export class QkdLinkBoard {
  private readonly links = new Map<string, QkdLinkState>();

  constructor(
    private readonly kmeId: string,
    private readonly kmeUrl: string,
  ) {}

  record(peerSaeId: string, seen: QkdLinkObservation): void {
    const prev = this.links.get(peerSaeId);
    const base = { ...prev, peerSaeId, kmeId: this.kmeId, kmeUrl: this.kmeUrl };
    const at = new Date().toISOString();
    if (seen.answered) {
      this.links.set(peerSaeId, { ...base, up: true, storedKeyCount: seen.storedKeyCount, lastOkAt: at });
      return;
    }
    // A KME that does not answer has no known stock: the last count would read as keys on hand.
    const { storedKeyCount: _stale, ...rest } = base;
    this.links.set(peerSaeId, { ...rest, up: false, lastError: seen.error, lastErrorAt: at });
  }

  list(): QkdLinkState[] {
    return [...this.links.values()];
  }
}
