// A real OpenID Connect provider (panva/oidc-provider) for the integration tests.
//
// One static confidential client; PKCE required. The login page is a plain form: the
// test posts the account it signs in as (subject, email, email_verified, name), or
// denies consent. Consent is granted with the login, so one form completes the flow.
// An account whose subject starts with "slow" gets authorization codes that expire
// after one second, for the expired-code test.
//
// Environment: PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI.

import { createServer } from "node:http";
import Provider from "oidc-provider";

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = new Map();

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: [process.env.REDIRECT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name"],
    groups: ["groups"],
  },
  scopes: ["openid", "email", "profile", "groups"],
  conformIdTokenClaims: false,
  cookies: { keys: ["liteskill-test-peer"] },
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => true },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: {
    AuthorizationCode: (ctx, code) => (String(code.accountId).startsWith("slow") ? 1 : 60),
  },
  async findAccount(ctx, sub) {
    const account = accounts.get(sub);
    if (!account) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...account }) };
  },
});

async function readForm(req) {
  let body = "";
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === "GET") {
    res.setHeader("content-type", "text/html");
    res.end(`<form method="post" action="/interaction/${uid}"><input name="sub"><button>Sign in</button></form>`);
    return;
  }
  const form = await readForm(req);
  if (form.get("deny")) {
    await provider.interactionFinished(req, res, { error: "access_denied", error_description: "the user denied access" });
    return;
  }
  const sub = form.get("sub");
  accounts.set(sub, {
    email: form.get("email"),
    email_verified: form.get("email_verified") === "true",
    name: form.get("name") ?? sub,
    // No field, no claim: the token then says nothing of groups.
    groups: form.has("groups") ? form.get("groups").split(",").filter(Boolean) : undefined,
  });
  const grant = new provider.Grant({ accountId: sub, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: sub }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

const callback = provider.callback();
createServer(async (req, res) => {
  const match = req.url.match(/^\/interaction\/([^/?]+)/);
  if (!match) return callback(req, res);
  try {
    await interaction(req, res, match[1]);
  } catch (error) {
    res.statusCode = 400;
    res.end(String(error));
  }
}).listen(port, "127.0.0.1", () => console.log(`ready ${issuer}`));
