/**
 * systemd's notify protocol (Type=notify, WatchdogSec=). Node's dgram cannot
 * send to a unix datagram socket, so each message goes through systemd's own
 * `systemd-notify` tool; the units set NotifyAccess=all for that reason.
 * Without NOTIFY_SOCKET (not under systemd) every call is a no-op.
 */
import { spawn } from 'node:child_process';
import type { SystemdEnv } from './config.js';
import type { Logger } from './logger.js';

export class SdNotify {
  private timer: NodeJS.Timeout | null = null;
  private warned = false;

  constructor(
    private readonly env: SystemdEnv,
    private readonly log: Logger,
  ) {}

  get enabled(): boolean {
    return this.env.notifySocket !== null;
  }

  send(fields: Record<string, string>): Promise<void> {
    if (!this.env.notifySocket) return Promise.resolve();
    const args = ['--no-block', `--pid=${process.pid}`, ...Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`)];
    return new Promise((resolve) => {
      const child = spawn('systemd-notify', args, { stdio: 'ignore', env: { ...process.env, NOTIFY_SOCKET: this.env.notifySocket! } });
      child.on('error', (err) => {
        if (!this.warned) this.log.warn({ err: err.message }, 'cannot run systemd-notify; systemd will not see this service as ready');
        this.warned = true;
        resolve();
      });
      child.on('exit', () => resolve());
    });
  }

  /**
   * READY=1 with a status line, then WATCHDOG=1 every half watchdog interval
   * for as long as `healthy()` answers true; a stuck loop or a broken buffer
   * stops the pings and lets systemd restart the service.
   */
  async ready(status: () => Promise<string>, healthy: () => Promise<boolean>): Promise<void> {
    await this.send({ READY: '1', STATUS: await status() });
    if (!this.env.watchdogUsec) return;
    const everyMs = Math.max(100, Math.floor(this.env.watchdogUsec / 2000));
    const tick = async () => {
      const ok = await healthy().catch(() => false);
      if (ok) await this.send({ WATCHDOG: '1', STATUS: await status().catch(() => 'status unavailable') });
      else this.log.error('health check failed: not pinging the systemd watchdog');
      if (this.timer) this.timer = setTimeout(tick, everyMs).unref();
    };
    this.timer = setTimeout(tick, everyMs).unref();
  }

  async stopping(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.send({ STOPPING: '1', STATUS: 'stopping' });
  }
}
