import { startTestIdentityProvider } from './provider.js';
const idp = await startTestIdentityProvider({ clients: [{ clientId: 'c1', clientSecret: 's1', redirectUri: 'http://app.test/cb' }] });
const res = await fetch(`${idp.issuer}/.well-known/openid-configuration`);
console.log(res.status, await res.text());
await idp.close();
