/**
 * The postmesh client for browsers and Node.
 *
 * It speaks the client protocol (PROTOCOL.md) over WebSocket at `/ws`, and
 * over SockJS at `/sockjs` when WebSocket cannot connect or is not wanted.
 * It does what every app would otherwise redo: reconnect with exponential
 * backoff and jitter; resume every subscription with `since` set to the
 * last cursor it saw, so a dropped connection loses nothing; drop copies
 * by UUID (a resume may replay a message again); follow the server's
 * `reread`; and refresh the token before it expires.
 */
import SockJS from "sockjs-client";

/** A stored message as the server sends it. */
export interface Message {
  path: string;
  uuid: string;
  cursor?: string;
  class?: string;
  meta?: Record<string, unknown>;
  body?: unknown;
  body_base64?: string;
}

export type Transport = "websocket" | "sockjs";

/** The part of a WebSocket the client uses (the browser's, or `ws` in Node). */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketCtor = new (url: string) => SocketLike;

export interface ClientOptions {
  /** The gateway's base URL: `http://host:port` or `https://host:port`. */
  url: string;
  /** A token (JWT) for `?token=`. */
  token?: string;
  /** Called for a fresh token before the current one expires (30 s
   * before, or halfway through what is left of a shorter-lived one); the
   * client sends it over the open connection (`auth`), so the connection
   * outlives the token. Also called before reconnecting with a token that
   * has expired, or after the server closed with 4001 (token expired). */
  refreshToken?: () => Promise<string>;
  /** Transports in the order tried; the default is WebSocket, then SockJS. */
  transports?: Transport[];
  /** SockJS's own transports, in order (`xhr-streaming`, `xhr-polling`, ...). */
  sockjsTransports?: string[];
  /** The WebSocket constructor; the global one by default (pass `ws` in Node 20). */
  WebSocket?: WebSocketCtor;
  /** First reconnect delay (ms); it doubles up to `maxDelayMs`, with jitter. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** UUIDs remembered to drop copies (a bounded window). */
  dedupeWindow?: number;
  /** A `ping` goes out this often (ms); a connection that has not answered
   * the previous one by then is taken as dead and replaced. Some transports
   * never report a peer that vanished (SockJS's xhr-streaming in Node), and
   * a half-open TCP connection reports nothing anywhere. 0 turns it off. */
  pingIntervalMs?: number;
}

/** A request the server refused: `code` is the `err` frame's code
 * (`bad_pattern`, `forbidden`, ...), or `disconnected` when the connection
 * dropped before the answer came (the request may have taken effect). */
export class PostmeshError extends Error {
  readonly code: string;
  readonly id: number | null;
  constructor(code: string, message: string, id: number | null = null) {
    super(`${code}: ${message}`);
    this.name = "PostmeshError";
    this.code = code;
    this.id = id;
  }
}

export interface Events {
  connected: { transport: Transport; reconnect: boolean };
  disconnected: { code: number; reason: string };
  /** A subscription (or, after a `reread`, every one) resumed. `gap`: the
   * server could not fill the gap (retention expired), messages may be lost. */
  resumed: { pattern: string | null; replayed: number; gap: boolean };
}

export interface SubscribeOptions {
  /** The K latest stored messages first (the first time only). */
  history?: number;
  /** Everything stored after this cursor first. */
  since?: string;
}

export type Handler = (m: Message) => void;

interface Sub {
  pattern: string;
  handler: Handler;
  cursor: string | undefined;
  history: number | undefined;
}

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: PostmeshError) => void;
}

/** RabbitMQ topic matching: `*` one element, `#` zero or more. */
export function topicMatch(pattern: string, path: string): boolean {
  const p = pattern.split(".");
  const s = path.split(".");
  const go = (i: number, j: number): boolean => {
    if (i === p.length) return j === s.length;
    if (p[i] === "#") {
      for (let k = j; k <= s.length; k++) if (go(i + 1, k)) return true;
      return false;
    }
    if (j === s.length) return false;
    return (p[i] === "*" || p[i] === s[j]) && go(i + 1, j + 1);
  };
  return go(0, 0);
}

/** How long before a token expires it is refreshed, at most: a token
 * that lives less is refreshed halfway through what is left of it. */
const REFRESH_LEAD_MS = 30_000;

/** A token this close to its expiry is refreshed before connecting with it. */
const STALE_MS = 1_000;

/** The `exp` claim of a JWT, in seconds, if it has one. */
function tokenExpiry(token: string): number | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const json = typeof atob === "function" ? atob(b64) : Buffer.from(b64, "base64").toString();
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : undefined;
  } catch {
    return undefined;
  }
}

export class PostmeshClient {
  private readonly opts: Required<Pick<ClientOptions, "initialDelayMs" | "maxDelayMs" | "dedupeWindow" | "pingIntervalMs">> &
    ClientOptions;
  private socket: SocketLike | null = null;
  private transport: Transport | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly subs = new Map<string, Sub>();
  private readonly seen = new Set<string>();
  private readonly listeners: { [K in keyof Events]?: Array<(e: Events[K]) => void> } = {};
  private closed = false;
  private attempts = 0;
  private everConnected = false;
  private ready: Promise<void>;
  private markReady!: () => void;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private token: string | undefined;
  private forceRefresh = false;
  private pingTimer: ReturnType<typeof setInterval> | null = null;

  constructor(options: ClientOptions) {
    this.opts = { initialDelayMs: 250, maxDelayMs: 10_000, dedupeWindow: 65_536, pingIntervalMs: 25_000, ...options };
    this.token = options.token;
    this.ready = new Promise((r) => (this.markReady = r));
  }

  /** Connects (and keeps reconnecting until `close`); resolves once connected. */
  connect(): Promise<void> {
    this.closed = false;
    if (!this.socket && !this.reconnectTimer) void this.open();
    return this.ready;
  }

  /** The transport in use, or null while disconnected. */
  get transportInUse(): Transport | null {
    return this.transport;
  }

  on<K extends keyof Events>(event: K, f: (e: Events[K]) => void): void {
    (this.listeners[event] ??= [] as never[]).push(f as never);
  }

  private emit<K extends keyof Events>(event: K, e: Events[K]): void {
    for (const f of this.listeners[event] ?? []) (f as (e: Events[K]) => void)(e);
  }

  /** Closes for good: no reconnect; pending requests reject. */
  close(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.reconnectTimer = this.refreshTimer = null;
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.socket?.close(1000, "closed by the app");
    this.socket = null;
  }

  /** Subscribes: the handler receives each matching message once. */
  async subscribe(pattern: string, handler: Handler, options: SubscribeOptions = {}): Promise<Record<string, unknown>> {
    const sub: Sub = { pattern, handler, cursor: options.since, history: options.history };
    this.subs.set(pattern, sub);
    try {
      return await this.sendSub(sub);
    } catch (e) {
      if (e instanceof PostmeshError && e.code !== "disconnected") this.subs.delete(pattern);
      throw e;
    }
  }

  async unsubscribe(pattern: string): Promise<void> {
    this.subs.delete(pattern);
    await this.request({ op: "unsub", pattern });
  }

  publish(
    path: string,
    body?: unknown,
    options: { meta?: Record<string, unknown>; uuid?: string; class?: string } = {},
  ): Promise<Record<string, unknown>> {
    return this.request({ op: "pub", path, body, ...options });
  }

  history(pattern: string, options: { limit?: number; before?: string } = {}): Promise<Record<string, unknown>> {
    return this.request({ op: "history", pattern, ...options });
  }

  latest(pattern: string): Promise<Record<string, unknown>> {
    return this.request({ op: "latest", pattern });
  }

  async dismiss(uuid: string): Promise<void> {
    await this.request({ op: "dismiss", uuid });
  }

  /** Sends a request once connected; resolves with its `ok` frame. */
  async request(frame: Record<string, unknown>): Promise<Record<string, unknown>> {
    await this.ready;
    return this.send(frame);
  }

  private send(frame: Record<string, unknown>): Promise<Record<string, unknown>> {
    const socket = this.socket;
    if (!socket) return Promise.reject(new PostmeshError("disconnected", "not connected"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      socket.send(JSON.stringify({ ...frame, id }));
    });
  }

  /** `sub`, resumed from the subscription's last cursor; follows `more`. */
  private async sendSub(sub: Sub): Promise<Record<string, unknown>> {
    await this.ready;
    for (;;) {
      const frame: Record<string, unknown> = { op: "sub", pattern: sub.pattern };
      if (sub.cursor) frame.since = sub.cursor;
      else if (sub.history) frame.history = sub.history;
      sub.history = undefined;
      const ok = await this.send(frame);
      // `more`: the replay stopped at max_replay and is not live yet.
      if (ok.more === true && frame.since !== undefined) continue;
      return ok;
    }
  }

  private async open(): Promise<void> {
    this.reconnectTimer = null;
    if (this.closed) return;
    if (this.opts.refreshToken && (this.forceRefresh || this.tokenStale())) {
      this.forceRefresh = false;
      try {
        this.token = await this.opts.refreshToken();
      } catch {
        return this.retry();
      }
    }
    for (const t of this.opts.transports ?? ["websocket", "sockjs"]) {
      const socket = await this.tryOpen(t);
      if (this.closed) {
        socket?.close(1000, "closed by the app");
        return;
      }
      if (socket) return this.onOpen(socket, t);
    }
    this.retry();
  }

  /** Opens one transport; null when it could not connect. */
  private tryOpen(t: Transport): Promise<SocketLike | null> {
    const q = this.token ? `?token=${encodeURIComponent(this.token)}` : "";
    let socket: SocketLike;
    try {
      if (t === "websocket") {
        const Ctor = this.opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
        if (!Ctor) return Promise.resolve(null);
        socket = new Ctor(this.opts.url.replace(/^http/, "ws") + "/ws" + q);
      } else {
        const o = this.opts.sockjsTransports ? { transports: this.opts.sockjsTransports } : {};
        socket = new SockJS(this.opts.url + "/sockjs" + q, undefined, o) as unknown as SocketLike;
      }
    } catch {
      return Promise.resolve(null);
    }
    return new Promise((resolve) => {
      socket.onopen = () => resolve(socket);
      socket.onerror = () => {};
      socket.onclose = () => resolve(null);
    });
  }

  private onOpen(socket: SocketLike, transport: Transport): void {
    const reconnect = this.everConnected;
    this.socket = socket;
    this.transport = transport;
    this.attempts = 0;
    this.everConnected = true;
    socket.onmessage = (ev) => this.onFrames(String(ev.data));
    socket.onclose = (ev) => this.onClose(socket, ev.code, ev.reason);
    socket.onerror = () => {};
    this.scheduleRefresh(socket);
    this.startPings(socket);
    this.markReady();
    this.emit("connected", { transport, reconnect });
    if (reconnect) {
      for (const sub of this.subs.values()) {
        this.sendSub(sub).then(
          (ok) =>
            this.emit("resumed", {
              pattern: sub.pattern,
              replayed: Number(ok.replayed ?? 0),
              gap: ok.gap === true,
            }),
          () => {},
        );
      }
    }
  }

  private onClose(socket: SocketLike, code: number, reason: string): void {
    if (this.socket !== socket) return;
    this.socket = null;
    this.transport = null;
    this.ready = new Promise((r) => (this.markReady = r));
    for (const [, p] of this.pending) p.reject(new PostmeshError("disconnected", `connection closed (${code})`));
    this.pending.clear();
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.emit("disconnected", { code, reason });
    if (code === 4001) this.forceRefresh = true;
    if (!this.closed) this.retry();
  }

  /** Exponential backoff with full jitter. */
  private retry(): void {
    if (this.closed || this.reconnectTimer) return;
    const ceiling = Math.min(this.opts.maxDelayMs, this.opts.initialDelayMs * 2 ** this.attempts);
    this.attempts++;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
  }

  /** Pings; a connection that left the previous ping unanswered is dead. */
  private startPings(socket: SocketLike): void {
    const every = this.opts.pingIntervalMs;
    if (!every) return;
    let answered = true;
    this.pingTimer = setInterval(() => {
      if (this.socket !== socket) return;
      if (!answered) {
        this.onClose(socket, 4002, "no answer to ping");
        try {
          socket.close(4002, "no answer to ping");
        } catch {}
        return;
      }
      answered = false;
      this.send({ op: "ping" }).then(
        () => (answered = true),
        () => {},
      );
    }, every);
  }

  /** Whether the token has expired, or is about to. */
  private tokenStale(): boolean {
    const exp = this.token ? tokenExpiry(this.token) : undefined;
    return exp !== undefined && exp * 1000 - Date.now() < STALE_MS;
  }

  /** Refreshes the token before it expires and sends it over `auth`:
   * 30 s before, or halfway through what is left of a shorter-lived one
   * (so a token of a few seconds is not refreshed in a tight loop). */
  private scheduleRefresh(socket: SocketLike): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    const refresh = this.opts.refreshToken;
    const exp = this.token ? tokenExpiry(this.token) : undefined;
    if (!refresh || exp === undefined) return;
    const left = Math.max(0, exp * 1000 - Date.now());
    const inMs = left - Math.min(REFRESH_LEAD_MS, left / 2);
    this.refreshTimer = setTimeout(async () => {
      this.refreshTimer = null;
      try {
        this.token = await refresh();
        // A connection that dropped meanwhile: the next one uses it.
        if (this.socket !== socket) return;
        await this.send({ op: "auth", token: this.token });
        this.scheduleRefresh(socket);
      } catch {
        // The server closes with 4001 when the token expires; the next
        // connection asks for a fresh one first.
        this.forceRefresh = true;
      }
    }, inMs);
  }

  private onFrames(data: string): void {
    // With `batch`, several frames share one message, one per line.
    for (const line of data.split("\n")) {
      if (!line) continue;
      let f: Record<string, unknown>;
      try {
        f = JSON.parse(line);
      } catch {
        continue;
      }
      this.onFrame(f);
    }
  }

  private onFrame(f: Record<string, unknown>): void {
    switch (f.op) {
      case "msg":
        return this.onMessage(f as unknown as Message);
      case "ok":
      case "err": {
        const id = typeof f.id === "number" ? f.id : null;
        const p = id === null ? undefined : this.pending.get(id);
        if (!p || id === null) return;
        this.pending.delete(id);
        if (f.op === "ok") p.resolve(f);
        else p.reject(new PostmeshError(String(f.code), String(f.message ?? ""), id));
        return;
      }
      case "reread": {
        this.emit("resumed", { pattern: null, replayed: Number(f.replayed ?? 0), gap: f.gap === true });
        // `more`: the reread stopped short; resume each from where it got.
        if (f.more === true) for (const sub of this.subs.values()) void this.sendSub(sub).catch(() => {});
        return;
      }
      default:
        return;
    }
  }

  private onMessage(m: Message): void {
    const matching = [...this.subs.values()].filter((s) => topicMatch(s.pattern, m.path));
    // The stream arrives in cursor order: the latest seen is where to resume.
    if (m.cursor) for (const s of matching) s.cursor = m.cursor;
    if (this.seen.has(m.uuid)) return;
    this.seen.add(m.uuid);
    if (this.seen.size > this.opts.dedupeWindow) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    // One copy per message, to every subscription it matches.
    for (const s of matching) s.handler(m);
  }
}
