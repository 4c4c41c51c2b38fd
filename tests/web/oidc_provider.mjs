// A real OpenID provider for the web app's tests: oidc-provider (the certified Node
// implementation) with the clients, accounts, signing key and API audiences in a JSON file.
// Usage: node oidc_provider.mjs CONFIG.json  (prints "listening <issuer>" once it serves)
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const conf = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { default: Provider, errors } = await import(
  pathToFileURL(`${conf.module_dir}/node_modules/oidc-provider/lib/index.js`).href
);

const accounts = conf.accounts;
const provider = new Provider(conf.issuer, {
  clients: conf.clients,
  jwks: { keys: [conf.jwk] },
  cookies: { keys: [conf.cookie_key] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  pkce: { required: () => true },
  ttl: { AccessToken: 600, ClientCredentials: 600, IdToken: 600, Session: 3600, Grant: 3600 },
  async findAccount(ctx, id) {
    if (!Object.hasOwn(accounts, id)) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...accounts[id] }; } };
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => false,
      getResourceServerInfo(ctx, resource) {
        if (!conf.resources.includes(resource)) throw new errors.InvalidTarget();
        return { scope: 'messages', audience: resource, accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
});
provider.proxy = false;

const port = Number(new URL(conf.issuer).port);
const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${conf.issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
