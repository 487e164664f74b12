import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

// The gateway serves gateway/web/postmesh.js at /postmesh.js; it must
// be this build, byte for byte.
test("the bundle the gateway serves is the current build", () => {
  const built = readFileSync(resolve(import.meta.dirname, "../postmesh.js"), "utf8");
  const served = readFileSync(resolve(import.meta.dirname, "../../../../gateway/web/postmesh.js"), "utf8");
  assert.ok(
    built === served,
    "gateway/web/postmesh.js is stale: cp clients/js/dist/postmesh.js gateway/web/ after npm run build",
  );
});
