// sockjs-client itself (no postmesh client) against the gateway, once per
// transport: subscribe, publish and receive; a heartbeat arrives; closing
// the session ends it on the server (its connection count returns to zero).
import { test } from "node:test";
import assert from "node:assert/strict";
import SockJS from "sockjs-client";
import { Server } from "./server.js";

async function connections(server: Server): Promise<number> {
  return (await (await fetch(`${server.url}/healthz`)).json()).connections;
}

for (const transport of ["websocket", "xhr-streaming", "xhr-polling"]) {
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
      const uuid = await server.publish("feeds.a.1", { x: 1 });
      await wait(() => frames.some((f) => f.op === "msg" && f.uuid === uuid));
      await wait(() => heartbeats > 0);
      assert.equal(await connections(server), 1);
      const closed = new Promise<void>((r) => (sock.onclose = () => r()));
      sock.close();
      await closed;
      const deadline = Date.now() + 15_000;
      while ((await connections(server)) !== 0) {
        assert.ok(Date.now() < deadline, "the session was not cleaned up");
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await server.stop();
    }
  });
}
