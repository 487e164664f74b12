import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { PostmeshClient, PostmeshError, topicMatch, type ClientOptions, type Message, type WebSocketCtor } from "../src/index.js";
import { Server, token } from "./server.js";

const WS = WebSocket as unknown as WebSocketCtor;

function until(cond: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((ok, fail) => {
    const tick = () => {
      if (cond()) return ok();
      if (Date.now() > deadline) return fail(new Error("timed out"));
      setTimeout(tick, 20);
    };
    tick();
  });
}

test("topic matching is RabbitMQ's", () => {
  assert.ok(topicMatch("feeds.#", "feeds"));
  assert.ok(topicMatch("feeds.#", "feeds.a.b"));
  assert.ok(topicMatch("feeds.*", "feeds.a"));
  assert.ok(!topicMatch("feeds.*", "feeds"));
  assert.ok(!topicMatch("feeds.*.x", "feeds.a.y"));
});

test("requests over WebSocket, and a typed error with the err frame's code", async () => {
  const server = await Server.start();
  const c = new PostmeshClient({ url: server.url, WebSocket: WS });
  try {
    await c.connect();
    assert.equal(c.transportInUse, "websocket");
    const got: Message[] = [];
    await c.subscribe("feeds.#", (m) => got.push(m));
    const ok = await c.publish("feeds.a.1", { n: 1 });
    await until(() => got.length === 1);
    assert.equal(got[0]?.uuid, ok.uuid);
    const h = await c.history("feeds.#", { limit: 10 });
    assert.equal((h.messages as Message[]).length, 1);
    const l = await c.latest("feeds.#");
    assert.equal((l.messages as Message[])[0]?.uuid, ok.uuid);
    await assert.rejects(c.subscribe("feeds..x", () => {}), (e: unknown) => e instanceof PostmeshError && e.code === "bad_pattern");
    await c.unsubscribe("feeds.#");
  } finally {
    c.close();
    await server.stop();
  }
});

const variants: Array<[string, Partial<ClientOptions>]> = [
  ["WebSocket", { WebSocket: WS }],
  ["SockJS xhr-streaming", { transports: ["sockjs"], sockjsTransports: ["xhr-streaming"] }],
  ["SockJS xhr-polling", { transports: ["sockjs"], sockjsTransports: ["xhr-polling"] }],
];
for (const [name, options] of variants) {
  test(`${name}: 1000 messages exactly once across a server kill and restart`, async () => {
    const server = await Server.start();
    const c = new PostmeshClient({ url: server.url, initialDelayMs: 100, maxDelayMs: 1000, pingIntervalMs: 500, ...options });
    const events: string[] = [];
    c.on("connected", (e) => events.push(`connected:${e.transport}`));
    c.on("disconnected", () => events.push("disconnected"));
    c.on("resumed", (e) => events.push(`resumed:${e.gap}`));
    try {
      await c.connect();
      const counts = new Map<number, number>();
      await c.subscribe("feeds.#", (m) => {
        const n = (m.body as { n: number }).n;
        counts.set(n, (counts.get(n) ?? 0) + 1);
      });
      for (let n = 0; n < 1000; n++) {
        if (n === 400) {
          await server.kill();
          // Published while the device is away: it must get them on resume.
          const back = server.up();
          await back;
        }
        await server.publish(`feeds.n.${n % 7}`, { n });
      }
      await until(() => counts.size === 1000, 60_000);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(counts.size, 1000);
      assert.ok([...counts.values()].every((v) => v === 1), "every message exactly once");
      assert.ok(events.includes("disconnected"), events.join(","));
      assert.ok(events.includes("resumed:false"), events.join(","));
    } finally {
      c.close();
      await server.stop();
    }
  });
}

const SECRET = "refresh-secret";
const refreshVariants: Array<[string, Partial<ClientOptions>]> = [
  ["WebSocket", { WebSocket: WS }],
  ["SockJS xhr-streaming", { transports: ["sockjs"], sockjsTransports: ["xhr-streaming"] }],
];
for (const [name, options] of refreshVariants) {
  test(`${name}: tokens of 4 s refreshed through the callback keep the connection past each expiry`, async () => {
    const server = await Server.start(`secret = "${SECRET}"\n`);
    const publisher = token(SECRET, 600, { pubs: ["feeds.#"] });
    const first = token(SECRET, 4, { subs: ["feeds.#"] });
    const firstExpiry = JSON.parse(Buffer.from(first.split(".")[1] ?? "", "base64url").toString()).exp * 1000;
    let refreshes = 0;
    const c = new PostmeshClient({
      url: server.url,
      token: first,
      refreshToken: async () => {
        refreshes++;
        return token(SECRET, 4, { subs: ["feeds.#"] });
      },
      ...options,
    });
    const events: string[] = [];
    c.on("connected", (e) => events.push(`connected:${e.transport}`));
    c.on("disconnected", (e) => events.push(`disconnected:${e.code}`));
    try {
      await c.connect();
      const got: string[] = [];
      await c.subscribe("feeds.#", (m) => got.push(m.uuid));
      const published: Array<{ uuid: string; at: number }> = [];
      // 10 s: past the first token's expiry and that of the next ones.
      const end = Date.now() + 10_000;
      while (Date.now() < end) {
        published.push({ at: Date.now(), uuid: await server.publish("feeds.refresh.1", {}, publisher) });
        await new Promise((r) => setTimeout(r, 500));
      }
      const uuids = published.map((p) => p.uuid);
      await until(() => uuids.every((u) => got.includes(u)), 10_000);
      const afterExpiry = published.filter((p) => p.at > firstExpiry + 1_000);
      assert.ok(afterExpiry.length >= 5, `messages published after the first token expired: ${afterExpiry.length}`);
      assert.deepEqual(events, [`connected:${options.transports?.[0] ?? "websocket"}`], "one connection throughout");
      // About one refresh per 2 s (halfway through each 4 s token), not a
      // tight loop of them.
      assert.ok(refreshes >= 3 && refreshes <= 15, `the callback supplied each next token (${refreshes} calls)`);
      assert.equal(got.length, uuids.length, "each message once");
    } finally {
      c.close();
      await server.stop();
    }
  });
}
