// Turns the WebSocket provider's events into the one status line the editor shows.
//
// "connected": the socket is open and both sides have exchanged what the other lacked.
// "connecting": the first connection (or a sync) is under way.
// "reconnecting": the connection dropped; y-websocket retries by itself with a short backoff.
// "offline": the connection is down and this page holds edits the server has not received. They are kept in
//            IndexedDB, so they survive closing the tab, and are sent when the connection is back.
import type * as Y from 'yjs';
import type { WebsocketProvider } from 'y-websocket';

export type Status = 'connecting' | 'connected' | 'reconnecting' | 'offline';

export interface StatusView {
  status: Status;
  label: string;
  detail: string;
}

export class ConnectionMonitor {
  private everConnected = false;
  /** A connection attempt has failed, so "connecting" would understate the problem. */
  private attemptFailed = false;
  private unsynced = 0;
  private timer: number;
  private last = '';
  private readonly onUpdate = (_update: Uint8Array, origin: unknown) => {
    if (origin === this.provider || this.ignoredOrigins.includes(origin)) return;
    if (!this.isLive()) this.unsynced += 1;
    this.refresh();
  };
  private readonly onStatus = () => this.refresh();
  private readonly onFailure = () => {
    this.attemptFailed = true;
    this.refresh();
  };
  private readonly onNetwork = () => {
    // Chromium keeps a socket open for a while after the network goes; stop using it at once, and start again
    // as soon as the network is back rather than waiting for the next backoff step.
    if (navigator.onLine) this.provider.connect();
    else this.provider.disconnect();
    this.refresh();
  };

  constructor(
    private readonly provider: WebsocketProvider,
    private readonly doc: Y.Doc,
    private readonly ignoredOrigins: unknown[],
    private readonly render: (view: StatusView) => void,
  ) {
    doc.on('update', this.onUpdate);
    provider.on('status', this.onStatus);
    provider.on('sync', this.onStatus);
    provider.on('connection-error', this.onFailure);
    provider.on('connection-close', this.onFailure);
    window.addEventListener('online', this.onNetwork);
    window.addEventListener('offline', this.onNetwork);
    // The browser's idea of being online changes without a provider event, so look again now and then.
    this.timer = window.setInterval(() => this.refresh(), 1000);
    this.refresh();
  }

  destroy(): void {
    this.doc.off('update', this.onUpdate);
    this.provider.off('status', this.onStatus);
    this.provider.off('sync', this.onStatus);
    this.provider.off('connection-error', this.onFailure);
    this.provider.off('connection-close', this.onFailure);
    window.removeEventListener('online', this.onNetwork);
    window.removeEventListener('offline', this.onNetwork);
    window.clearInterval(this.timer);
  }

  /**
   * The socket is open and the first exchange is done: edits go straight out. (The protocol has no
   * acknowledgements; an edit sent just before a drop is sent again by the sync that follows a reconnect.)
   */
  private isLive(): boolean {
    return this.provider.wsconnected && this.provider.synced;
  }

  private refresh(): void {
    if (this.isLive()) {
      this.everConnected = true;
      this.unsynced = 0;
    }
    const view = this.describe();
    const key = `${view.status}|${view.label}|${view.detail}`;
    if (key !== this.last) {
      this.last = key;
      this.render(view);
    }
  }

  private describe(): StatusView {
    if (this.isLive()) {
      return { status: 'connected', label: 'Connected', detail: 'Changes are shared as you type.' };
    }
    if (this.unsynced > 0) {
      return {
        status: 'offline',
        label: 'Offline · unsynced edits',
        detail: 'Your edits are kept in this browser, even if you close the tab, and are sent when the connection is back.',
      };
    }
    if (!this.everConnected && !this.attemptFailed) {
      return { status: 'connecting', label: 'Connecting…', detail: 'Opening the live connection.' };
    }
    const detail = !navigator.onLine
      ? 'This device is offline; waiting for the network.'
      : this.everConnected
        ? 'The connection dropped; trying again.'
        : 'The server cannot be reached yet; trying again.';
    return { status: 'reconnecting', label: 'Reconnecting…', detail };
  }
}
