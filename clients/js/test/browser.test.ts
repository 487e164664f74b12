// The live page in a real Chromium (Debian's, driven by playwright-core):
// over WebSocket, SockJS xhr-streaming and SockJS xhr-polling, it shows
// every message published over HTTP exactly once, across a gateway restart.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium, type Page } from "playwright-core";
import { Server } from "./server.js";

const CHROMIUM = process.env.POSTMESH_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = resolve(import.meta.dirname, "../../artifacts");

async function rows(page: Page): Promise<string[]> {
  return page.$$eval("#messages tr", (trs) => trs.map((tr) => (tr as HTMLElement).dataset.uuid ?? ""));
}

async function waitRows(page: Page, uuids: string[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const shown = await rows(page);
    if (uuids.every((u) => shown.includes(u))) return;
    if (Date.now() > deadline) throw new Error(`not shown: ${uuids.filter((u) => !shown.includes(u))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("the live page receives every message exactly once, across a restart, on each transport", async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium`);
  mkdirSync(ARTIFACTS, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), "postmesh-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const server = await Server.start();
  try {
    for (const transport of ["websocket", "xhr-streaming", "xhr-polling"]) {
      const page = await browser.newPage();
      page.on("pageerror", (e) => console.error(transport, e));
      // The page is at `/`; its former address `/live` redirects there
      // with the query string kept.
      const at = transport === "websocket" ? "/live" : "/";
      await page.goto(`${server.url}${at}?transport=${transport}&pattern=${encodeURIComponent("feeds.#")}`);
      assert.equal(new URL(page.url()).pathname, "/");
      await page.waitForSelector('#status[data-state="connected"]');
      await page.waitForSelector("body[data-subscribed=true]");
      const status = await page.textContent("#status");
      assert.match(status ?? "", transport === "websocket" ? /WebSocket/ : new RegExp(transport));
      const before = [];
      for (let n = 0; n < 3; n++) before.push(await server.publish(`feeds.${transport}.${n}`, { transport, n }));
      await waitRows(page, before);
      await page.screenshot({ path: join(ARTIFACTS, `live-${transport}-before.png`) });

      await server.kill();
      await page.waitForSelector('#status[data-state="disconnected"]', { timeout: 60_000 });
      const back = server.up();
      await back;
      // Published while the page was away, and after.
      const after = [];
      for (let n = 3; n < 8; n++) after.push(await server.publish(`feeds.${transport}.${n}`, { transport, n }));
      await page.waitForSelector('#status[data-state="connected"]', { timeout: 60_000 });
      await waitRows(page, after);
      await new Promise((r) => setTimeout(r, 500));
      const shown = await rows(page);
      assert.equal(shown.length, 8, `exactly once: ${shown}`);
      assert.equal(new Set(shown).size, 8);
      assert.match((await page.textContent("#status")) ?? "", /reconnects: [1-9]/);
      await page.screenshot({ path: join(ARTIFACTS, `live-${transport}-after-restart.png`) });
      await page.close();
    }
  } finally {
    await browser.close();
    await server.stop();
    rmSync(profile, { recursive: true, force: true });
  }
});
