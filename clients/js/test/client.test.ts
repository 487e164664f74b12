import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { PostmeshClient, PostmeshError, topicMatch, type ClientOptions, type Message, type WebSocketCtor } from "../src/index.js";
import { Server } from "./server.js";

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
