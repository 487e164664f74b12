// A real `postmesh up` for the tests: a free loopback port, a temporary
// data directory, killed (SIGKILL) and restarted on the same port and data.
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export function binary(): string {
  const target = process.env.CARGO_TARGET_DIR ?? resolve(import.meta.dirname, "../../../../target");
  const bin = process.env.POSTMESH_BIN ?? join(target, "debug", "postmesh");
  if (!existsSync(bin)) throw new Error(`no postmesh binary at ${bin}: cargo build --bin postmesh first`);
  return bin;
}

/** A token (JWT, HS256) as `postmesh token` issues it, expiring `ttlSecs`
 * from now. */
export function token(secret: string, ttlSecs: number, claims: { subs?: string[]; pubs?: string[] } = {}): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ exp: Math.floor(Date.now() / 1000) + ttlSecs, subs: claims.subs ?? [], pubs: claims.pubs ?? [] });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (a && typeof a === "object" ? ok(a.port) : fail(new Error("no port"))));
    });
  });
}

export class Server {
  private child: ChildProcess | null = null;
  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  static async start(extra = ""): Promise<Server> {
    const dir = mkdtempSync(join(tmpdir(), "postmesh-js-"));
    const port = await freePort();
    writeFileSync(
      join(dir, "postmesh.toml"),
      `data = "${join(dir, "data")}"\n[gateway]\nlisten = "127.0.0.1:${port}"\n${extra}`,
    );
    const s = new Server(dir, port);
    await s.up();
    return s;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    const log = openSync(join(this.dir, "postmesh.log"), "a");
    this.child = spawn(binary(), ["up", "--config", join(this.dir, "postmesh.toml")], { stdio: ["ignore", log, log] });
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return;
      } catch {}
      if (Date.now() > deadline) throw new Error("postmesh did not start: " + readFileSync(join(this.dir, "postmesh.log"), "utf8"));
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Kills the process at once (no graceful shutdown). */
  async kill(): Promise<void> {
    const c = this.child;
    this.child = null;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((r) => {
      c.once("exit", () => r());
      c.kill("SIGKILL");
    });
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** `POST /v1/publish` (with `token` as a bearer token, if given),
   * retried while the server cannot be reached or answers 5xx. */
  async publish(path: string, body: unknown, token?: string): Promise<string> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    for (;;) {
      let r: Response;
      try {
        r = await fetch(`${this.url}/v1/publish`, { method: "POST", headers, body: JSON.stringify({ path, body }) });
      } catch {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      if (r.ok) return (await r.json()).uuid;
      if (r.status < 500) throw new Error(`publish refused: ${r.status} ${await r.text()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
