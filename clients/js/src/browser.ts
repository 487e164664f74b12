// The browser bundle (dist/postmesh.js): `postmesh.PostmeshClient` and the rest.
export * from "./index.js";
