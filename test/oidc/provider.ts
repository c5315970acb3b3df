// A real OpenID Connect provider (the certified `oidc-provider` package) on 127.0.0.1, set up
// the way Google's is: discovery document, RS256 signing keys published as a JWKS, `email`,
// `email_verified`, `name` and `hd` claims in the ID token, PKCE required, a confidential
// web client. Instead of a login page, each test says who signs in next (or that the user
// denies consent), and the interaction endpoints answer for that user.
//
// To test the relying party's ID token checks, the provider can also be told to misbehave:
// re-sign the ID tokens it issues after changing their claims (wrong audience, expired), or
// sign them with a key it does not publish.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { after, before } from 'node:test';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { decodeJwt, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import Provider, { type Adapter, type AdapterPayload } from 'oidc-provider';

export interface TestAccount {
  sub: string;
  email: string;
  emailVerified: boolean;
  name: string;
  /** Google Workspace hosted domain, only for organisation accounts. */
  hd?: string;
}

export interface TestClient {
  clientId: string;
  clientSecret: string;
  redirectUri: string;
}

/** What the "user" does at the provider on the next authorization request. */
type SignInPlan = { accountId: string } | { deny: true };

interface IdTokenTampering {
  /** Changes the claims before the ID token is re-signed. */
  claims?: (claims: JWTPayload) => JWTPayload;
  /** Signs with a key that is not in the provider's JWKS (same `kid`). */
  signWithUnpublishedKey?: boolean;
}

export interface TestIdentityProvider {
  readonly issuer: string;
  addAccount(account: TestAccount): void;
  /** Decides who signs in (or who refuses consent) on the next interaction. */
  setNextSignIn(plan: SignInPlan): void;
  /** Makes the token endpoint hand out tampered ID tokens until cleared with `undefined`. */
  tamperIdTokens(tampering: IdTokenTampering | undefined): void;
  close(): Promise<void>;
}

const SIGNING_KID = 'test-rs256';

export async function startTestIdentityProvider(opts: { clients: TestClient[] }): Promise<TestIdentityProvider> {
  const accounts = new Map<string, TestAccount>();
  let nextSignIn: SignInPlan | undefined;
  let tampering: IdTokenTampering | undefined;

  const signingKeys = await generateKeyPair('RS256', { extractable: true });
  const unpublishedKeys = await generateKeyPair('RS256', { extractable: true });
  const privateJwk = { ...(await exportJWK(signingKeys.privateKey)), kid: SIGNING_KID, alg: 'RS256', use: 'sig' };

  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = createServer((req, res) => handler(req, res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    adapter: createMemoryAdapterFactory(),
    clients: opts.clients.map((client) => ({
      client_id: client.clientId,
      client_secret: client.clientSecret,
      redirect_uris: [client.redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'RS256',
    })),
    jwks: { keys: [privateJwk] },
    responseTypes: ['code'],
    pkce: { required: () => true },
    // Google puts the profile and email claims in the ID token itself.
    conformIdTokenClaims: false,
    claims: {
      openid: ['sub', 'hd'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: [randomUUID()] },
    ttl: { AuthorizationCode: 60, IdToken: 3600, AccessToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
    findAccount: async (_ctx, sub) => {
      const account = accounts.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        claims: () => ({
          sub: account.sub,
          email: account.email,
          email_verified: account.emailVerified,
          name: account.name,
          ...(account.hd === undefined ? {} : { hd: account.hd }),
        }),
      };
    },
  });

  provider.on('server_error', (_ctx, err) => {
    console.error('test identity provider error', err);
  });

  provider.use(async (ctx, next) => {
    await next();
    if (!tampering || ctx.method !== 'POST' || ctx.path !== '/token' || ctx.status !== 200) return;
    const body = ctx.body as { id_token?: unknown } | undefined;
    if (typeof body?.id_token !== 'string') return;
    const claims = tampering.claims ? tampering.claims(decodeJwt(body.id_token)) : decodeJwt(body.id_token);
    const key: CryptoKey = tampering.signWithUnpublishedKey ? unpublishedKeys.privateKey : signingKeys.privateKey;
    body.id_token = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: SIGNING_KID, typ: 'JWT' }).sign(key);
  });

  const providerCallback = provider.callback();

  async function handleInteraction(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const interaction = await provider.interactionDetails(req, res);
    const plan = nextSignIn;
    if (!plan) throw new Error('test identity provider: no sign-in planned (call setNextSignIn)');
    if ('deny' in plan) {
      await provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'The user denied the request' },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    switch (interaction.prompt.name) {
      case 'login':
        await provider.interactionFinished(req, res, { login: { accountId: plan.accountId } }, { mergeWithLastSubmission: false });
        return;
      case 'consent': {
        const accountId = interaction.session?.accountId ?? plan.accountId;
        const grant =
          (interaction.grantId === undefined ? undefined : await provider.Grant.find(interaction.grantId)) ??
          new provider.Grant({ accountId, clientId: String(interaction.params['client_id']) });
        grant.addOIDCScope(String(interaction.params['scope']));
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        return;
      }
      default:
        throw new Error(`test identity provider: unexpected prompt ${interaction.prompt.name}`);
    }
  }

  handler = (req, res) => {
    if (req.method === 'GET' && req.url?.startsWith('/interaction/')) {
      handleInteraction(req, res).catch((err: unknown) => {
        console.error('test identity provider interaction failed', err);
        res.statusCode = 500;
        res.end();
      });
      return;
    }
    providerCallback(req, res);
  };

  return {
    issuer,
    addAccount(account) {
      accounts.set(account.sub, account);
    },
    setNextSignIn(plan) {
      nextSignIn = plan;
    },
    tamperIdTokens(value) {
      tampering = value;
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

/** An in-memory storage adapter, one per provider, so tests never share provider state. */
function createMemoryAdapterFactory(): (name: string) => Adapter {
  const records = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  const grants = new Map<string, Set<string>>();
  const sessionUids = new Map<string, string>();
  const userCodes = new Map<string, string>();
  const epochNow = () => Math.floor(Date.now() / 1000);

  return (name) => {
    const key = (id: string) => `${name}:${id}`;
    const find = async (id: string): Promise<AdapterPayload | undefined> => {
      const record = records.get(key(id));
      if (!record) return undefined;
      if (record.expiresAt <= Date.now()) {
        records.delete(key(id));
        return undefined;
      }
      return record.payload;
    };
    return {
      async upsert(id, payload, expiresIn) {
        records.set(key(id), { payload, expiresAt: Date.now() + expiresIn * 1000 });
        if (payload.grantId !== undefined) {
          const members = grants.get(payload.grantId) ?? new Set<string>();
          members.add(key(id));
          grants.set(payload.grantId, members);
        }
        if (name === 'Session' && payload.uid !== undefined) sessionUids.set(payload.uid, id);
        if (payload.userCode !== undefined) userCodes.set(payload.userCode, id);
      },
      find,
      async findByUid(uid) {
        const id = sessionUids.get(uid);
        return id === undefined ? undefined : find(id);
      },
      async findByUserCode(userCode) {
        const id = userCodes.get(userCode);
        return id === undefined ? undefined : find(id);
      },
      async consume(id) {
        const record = records.get(key(id));
        if (record) record.payload.consumed = epochNow();
      },
      async destroy(id) {
        records.delete(key(id));
      },
      async revokeByGrantId(grantId) {
        for (const member of grants.get(grantId) ?? []) records.delete(member);
        grants.delete(grantId);
      },
    };
  };
}

/**
 * The provider for the tests of one file, started before them and closed after them, with one
 * client registered. Returns a getter: the provider exists once the tests run.
 */
export function useTestIdentityProvider(client: TestClient): () => TestIdentityProvider {
  let idp: TestIdentityProvider | null = null;
  before(async () => {
    idp = await startTestIdentityProvider({ clients: [client] });
  });
  after(async () => {
    await idp?.close();
  });
  return () => {
    if (!idp) throw new Error('the test identity provider starts before the tests');
    return idp;
  };
}
