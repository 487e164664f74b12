// sockjs-client itself (no postmesh client) against the gateway, once per
// transport sockjs-client has in Node: subscribe, publish and receive; a
// heartbeat arrives; closing the session ends it on the server (the SockJS
// session count in /metrics, and the connection count, return to zero).
import { test } from "node:test";
import assert from "node:assert/strict";
import SockJS from "sockjs-client";
import { Server } from "./server.js";

/** The open connections, and the SockJS sessions the gateway holds. */
async function counts(server: Server): Promise<{ connections: number; sessions: number }> {
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const gauge = (name: string) => {
    const line = metrics.split("\n").find((l) => l.startsWith(name + " "));
    assert.ok(line, `no ${name} in /metrics`);
    return Number(line.split(" ")[1]);
  };
  return {
    connections: gauge("postmesh_gateway_connections"),
    sessions: gauge("postmesh_gateway_sockjs_sessions"),
  };
}

for (const transport of ["websocket", "xhr-streaming", "xhr-polling", "eventsource"]) {
  test(`sockjs-client over ${transport}: messages, a heartbeat, and clean-up`, async () => {
    const server = await Server.start("[gateway.sockjs]\nheartbeat_secs = 1\n");
    try {
      const sock = new SockJS(`${server.url}/sockjs`, undefined, { transports: [transport] });
      const frames: Array<Record<string, unknown>> = [];
      let heartbeats = 0;
      sock.addEventListener("heartbeat", () => heartbeats++);
      sock.onmessage = (e) => frames.push(JSON.parse(String(e.data)));
      await new Promise<void>((ok, fail) => {
        sock.onopen = () => ok();
        sock.onclose = (e) => fail(new Error(`closed: ${e.code} ${e.reason}`));
      });
      assert.equal((sock as unknown as { transport: string }).transport, transport);
      sock.send(JSON.stringify({ op: "sub", id: 1, pattern: "feeds.#" }));
      const wait = async (f: () => boolean) => {
        const deadline = Date.now() + 15_000;
        while (!f()) {
          if (Date.now() > deadline) throw new Error(`timed out: ${JSON.stringify(frames)}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await wait(() => frames.some((f) => f.op === "ok" && f.id === 1));
      // Published over HTTP, and over this session itself.
      const uuid = await server.publish("feeds.a.1", { x: 1 });
      await wait(() => frames.some((f) => f.op === "msg" && f.uuid === uuid));
      sock.send(JSON.stringify({ op: "pub", id: 2, path: "feeds.b.2", body: { transport } }));
      await wait(() => frames.some((f) => f.op === "ok" && f.id === 2));
      const own = frames.find((f) => f.op === "ok" && f.id === 2)?.uuid;
      assert.equal(typeof own, "string");
      await wait(() => frames.some((f) => f.op === "msg" && f.uuid === own && f.path === "feeds.b.2"));
      await wait(() => heartbeats > 0);
      assert.deepEqual(await counts(server), { connections: 1, sessions: 1 });
      const closed = new Promise<void>((r) => (sock.onclose = () => r()));
      sock.close();
      await closed;
      // An HTTP session is forgotten after the disconnect delay (5 s).
      const deadline = Date.now() + 20_000;
      for (;;) {
        const now = await counts(server);
        if (now.connections === 0 && now.sessions === 0) break;
        assert.ok(Date.now() < deadline, `the session was not cleaned up: ${JSON.stringify(now)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await server.stop();
    }
  });
}
