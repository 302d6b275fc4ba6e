// Test support: an OpenID Connect issuer written with the `jose` library for Node.js.
//
// It serves discovery and a JWKS on 127.0.0.1 and mints tokens on request, so the broker is
// checked against tokens made by a JOSE implementation other than pyjwt. Started by the test
// fixture with `node node_issuer.mjs [--path /prefix]` from a directory whose node_modules
// holds `jose`; it prints one JSON line `{"port": N, "issuer": "http://127.0.0.1:N/prefix"}`
// once it listens, then serves until it is killed.
//
//   GET <path>/.well-known/openid-configuration   discovery (issuer, jwks_uri)
//   GET <path>/jwks.json                           the public keys (RS256, ES256, EdDSA)
//   GET <path>/token?sub=..&aud=..&alg=..&lifetime=..&claims=<json>
//                                                  a signed token (aud may repeat)
//   GET <path>/stats                               {"jwks": <JWKS requests served>}

import http from "node:http";
import { randomUUID } from "node:crypto";
import { SignJWT, exportJWK, generateKeyPair } from "jose";

const args = process.argv.slice(2);
const pathIndex = args.indexOf("--path");
const prefix = pathIndex >= 0 ? args[pathIndex + 1] : "";

const keys = {};
for (const alg of ["RS256", "ES256", "EdDSA"]) {
  const options = alg === "EdDSA" ? { crv: "Ed25519", extractable: true } : { extractable: true };
  const { publicKey, privateKey } = await generateKeyPair(alg, options);
  const jwk = await exportJWK(publicKey);
  const kid = `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`;
  keys[alg] = { kid, privateKey, jwk: { ...jwk, kid, alg, use: "sig" } };
}

let issuer = "";
let jwksHits = 0;

function send(res, status, body, type = "application/json") {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

async function mint(query) {
  const alg = query.get("alg") || "RS256";
  const key = keys[alg];
  if (!key) throw new Error(`unsupported alg ${alg}`);
  const audiences = query.getAll("aud");
  const lifetime = Number(query.get("lifetime") || "3600");
  const extra = query.get("claims") ? JSON.parse(query.get("claims")) : {};
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(extra)
    .setProtectedHeader({ alg, kid: key.kid, typ: "JWT" })
    .setIssuer(issuer)
    .setSubject(query.get("sub") || "alice")
    .setAudience(audiences.length === 1 ? audiences[0] : audiences.length ? audiences : "sts.amazonaws.com")
    .setIssuedAt(now)
    .setNotBefore(now - 5)
    .setExpirationTime(now + lifetime)
    .setJti(randomUUID())
    .sign(key.privateKey);
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, "http://127.0.0.1");
    const path = url.pathname;
    if (path === `${prefix}/.well-known/openid-configuration`) {
      return send(res, 200, {
        issuer,
        jwks_uri: `${issuer}/jwks.json`,
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: Object.keys(keys),
      });
    }
    if (path === `${prefix}/jwks.json`) {
      jwksHits += 1;
      return send(res, 200, { keys: Object.values(keys).map((k) => k.jwk) });
    }
    if (path === `${prefix}/token`) {
      return send(res, 200, await mint(url.searchParams), "application/jwt");
    }
    if (path === `${prefix}/stats`) {
      return send(res, 200, { jwks: jwksHits });
    }
    return send(res, 404, { error: "not found" });
  } catch (err) {
    return send(res, 400, { error: String(err) });
  }
});

server.listen(0, "127.0.0.1", () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}${prefix}`;
  process.stdout.write(JSON.stringify({ port, issuer }) + "\n");
});

process.on("SIGTERM", () => server.close(() => process.exit(0)));
