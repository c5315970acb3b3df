/**
 * Where a webhook may point. A webhook URL is chosen by a user but requested by the server,
 * so without a check it would let any doctor make the server call its own admin ports, the
 * database, or the cloud metadata endpoint (SSRF). Targets that resolve to private,
 * loopback, link-local, unique-local, multicast or otherwise non-public addresses are
 * refused unless WEBHOOK_ALLOW_PRIVATE=true (development, tests, on-premises receivers).
 *
 * The check returns the vetted addresses, and the delivery connects to exactly those
 * (http.ts pins them), so a DNS answer that changes between check and connect (DNS
 * rebinding) cannot redirect a delivery to an internal address.
 */
import { promises as dns, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/** A URL that can never be a webhook target (bad scheme, private address...). */
export class TargetRefusedError extends Error {
  override name = 'TargetRefusedError';
}

/** Resolves a host name to every address it has (both families). */
export type HostResolver = (hostname: string) => Promise<LookupAddress[]>;

const resolveHost: HostResolver = (hostname) => dns.lookup(hostname, { all: true, verbatim: true });

const RANGES: Array<[reason: string, family: 'ipv4' | 'ipv6', cidr: string]> = [
  ['unspecified', 'ipv4', '0.0.0.0/8'],
  ['private', 'ipv4', '10.0.0.0/8'],
  ['private (carrier-grade NAT)', 'ipv4', '100.64.0.0/10'],
  ['loopback', 'ipv4', '127.0.0.0/8'],
  ['link-local', 'ipv4', '169.254.0.0/16'],
  ['private', 'ipv4', '172.16.0.0/12'],
  ['reserved', 'ipv4', '192.0.0.0/24'],
  ['reserved (documentation)', 'ipv4', '192.0.2.0/24'],
  ['private', 'ipv4', '192.168.0.0/16'],
  ['reserved (benchmarking)', 'ipv4', '198.18.0.0/15'],
  ['reserved (documentation)', 'ipv4', '198.51.100.0/24'],
  ['reserved (documentation)', 'ipv4', '203.0.113.0/24'],
  ['multicast', 'ipv4', '224.0.0.0/4'],
  ['reserved', 'ipv4', '240.0.0.0/4'],
  ['unspecified', 'ipv6', '::/128'],
  ['loopback', 'ipv6', '::1/128'],
  // IPv4-compatible (deprecated) addresses embed an IPv4 address; none is a public target.
  ['reserved', 'ipv6', '::/96'],
  ['private (NAT64 local use)', 'ipv6', '64:ff9b:1::/48'],
  ['reserved (discard)', 'ipv6', '100::/64'],
  ['reserved (documentation)', 'ipv6', '2001:db8::/32'],
  ['unique-local', 'ipv6', 'fc00::/7'],
  ['link-local', 'ipv6', 'fe80::/10'],
  ['site-local', 'ipv6', 'fec0::/10'],
  ['multicast', 'ipv6', 'ff00::/8'],
];

const LISTS = RANGES.map(([reason, family, cidr]) => {
  const [network, prefix] = cidr.split('/') as [string, string];
  const list = new BlockList();
  list.addSubnet(network, Number(prefix), family);
  return { reason, family, list };
});

const NAT64 = ipaddr.IPv6.parseCIDR('64:ff9b::/96');
const SIX_TO_FOUR = ipaddr.IPv6.parseCIDR('2002::/16');

/** An IPv4 address carried inside an IPv6 one that routes to it (mapped, NAT64, 6to4). */
function embeddedIpv4(address: string): string | null {
  if (!ipaddr.IPv6.isValid(address)) return null;
  const ip = ipaddr.IPv6.parse(address);
  // ::ffff:a.b.c.d (IPv4-mapped) and 64:ff9b::a.b.c.d (well-known NAT64 prefix).
  if (ip.isIPv4MappedAddress()) return ip.toIPv4Address().toString();
  const bytes = ip.toByteArray();
  if (ip.match(NAT64)) return bytes.slice(12).join('.');
  // 2002:AABB:CCDD::/48 (6to4) routes to AA.BB.CC.DD.
  if (ip.match(SIX_TO_FOUR)) return bytes.slice(2, 6).join('.');
  return null;
}

/** Why an address is not a public webhook target ("loopback", "private"...), or null if it is. */
function nonPublicReason(address: string): string | null {
  const family = isIP(address.split('%')[0]!);
  if (family === 0) return 'invalid';
  if (family === 6) {
    const v4 = embeddedIpv4(address);
    if (v4) return nonPublicReason(v4);
  }
  const plain = address.split('%')[0]!;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  for (const { reason, family: f, list } of LISTS) {
    if (f === type && list.check(plain, type)) return reason;
  }
  return null;
}

export interface TargetPolicy {
  allowPrivate: boolean;
  resolve?: HostResolver;
}

const PRIVATE_HINT = 'webhook targets on private, loopback or link-local networks are refused unless WEBHOOK_ALLOW_PRIVATE=true';

/**
 * Checks a webhook URL and returns the addresses a delivery may connect to. Throws
 * `TargetRefusedError` for a target that is not allowed (any one non-public address refuses
 * the host, so a name cannot mix a public address with an internal one); a DNS failure is
 * thrown as it is (it may be transient).
 */
export async function vetTarget(url: URL, policy: TargetPolicy): Promise<LookupAddress[]> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TargetRefusedError(`url must use http or https, got "${url.protocol}"`);
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const family = isIP(host);
  const addresses: LookupAddress[] = family
    ? [{ address: host, family }]
    : await (policy.resolve ?? resolveHost)(host);
  if (addresses.length === 0) throw new Error(`${host} has no addresses`);
  if (!policy.allowPrivate) {
    for (const { address } of addresses) {
      const reason = nonPublicReason(address);
      if (reason) {
        const where = family ? `${address} is` : `${host} resolves to ${address},`;
        throw new TargetRefusedError(`${where} not a public address (${reason}): ${PRIVATE_HINT}`);
      }
    }
  }
  return addresses;
}
