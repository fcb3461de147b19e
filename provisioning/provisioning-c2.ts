// Provisioning's view of C2 on the shared API client (lib/c2/c2-api.ts): what it asks C2 and the one
// question it must settle first, which crypto mode this C2 build serves.
import { C2Api, C2ApiError, C2RouteMissingError, C2_MAX_PAGE, type C2ApiOptions } from '../lib/c2/c2-api.ts';
import { forEachBounded } from '../lib/retry-with-backoff.ts';

export interface ProvisioningC2 {
  endpoint: string;
  /** 'symkey-only' when the build has no /e4/crypto-mode (the 2019 C2: no pubkey mode at all). */
  cryptoMode(): Promise<'symkey' | 'pubkey' | 'symkey-only'>;
  topics(): Promise<string[]>;
  /** Which of `names` C2 has registered already (by whatever means), asked the cheaper way (registrationCheck). */
  registeredAmong(names: readonly string[]): Promise<Set<string>>;
  /** NewTopic, for topics C2 does not have yet (on an existing topic it would rotate the key). */
  newTopic(topic: string): Promise<void>;
  newClient(name: string, key: Uint8Array): Promise<void>;
  /** PUT link: C2 sends the topic's key to the device (retained, on its command topic). */
  linkClientTopic(name: string, topic: string): Promise<void>;
  /** NewClientKey: C2 sends SetIDKey sealed with the current key, then stores the new one. */
  newClientKey(name: string): Promise<void>;
  close(): void;
}

export class C2UnreachableError extends Error {}

/**
 * How to learn which names C2 already has: list every client, or ask once per name. C2 pages its client
 * list with SQL OFFSET (ORDER BY name), so a page costs more the further in it is: measured against the
 * 2019 build on 2 cores, ~4 ms a page plus ~0.1 ms per 1,000 clients before it (40,000 clients: 3.2 s),
 * against ~1.5 ms per name asked (GET /e4/client/NAME/topics/count, 4 at a time). Ten new devices
 * against a fleet of a million are 10 questions, not 10,000 pages.
 */
export function registrationCheck(clientsInC2: number, names: number): 'list' | 'per-name' {
  const pages = Math.ceil(clientsInC2 / C2_MAX_PAGE) + 1;
  const listMs = pages * (4 + clientsInC2 / 10_000);
  return names * 1.5 < listMs ? 'per-name' : 'list';
}

export function provisioningC2FromApi(api: C2Api): ProvisioningC2 {
  const wrap = <A extends unknown[], R>(f: (...a: A) => Promise<R>) => async (...a: A): Promise<R> => {
    try { return await f(...a); } catch (e) {
      if (e instanceof C2ApiError && (e.status === 0 || e.status >= 500)) throw new C2UnreachableError(`${e.message} (is C2 running at ${api.opts.baseUrl}?)`);
      throw e;
    }
  };
  return {
    endpoint: api.opts.baseUrl,
    cryptoMode: wrap(async () => {
      try { return await api.cryptoMode() === 'pubkey' ? 'pubkey' : 'symkey'; } catch (e) {
        if (e instanceof C2RouteMissingError) return 'symkey-only';
        throw e;
      }
    }),
    topics: wrap(() => api.allTopics()),
    registeredAmong: wrap(async (names: readonly string[]) => {
      const total = await api.countClients();
      if (registrationCheck(total, names.length) === 'per-name') {
        const found = new Set<string>();
        await forEachBounded(names, 4, async (name) => { if (await api.hasClient(name)) found.add(name); });
        return found;
      }
      // Pages fetched 4 at a time from the count (a fleet of 10,000 is 100 pages).
      const offsets = Array.from({ length: Math.ceil(total / C2_MAX_PAGE) + 1 }, (_, i) => i * C2_MAX_PAGE);
      const pages: string[][] = [];
      await forEachBounded(offsets, 4, async (offset, i) => { pages[i] = await api.listClients({ offset, count: C2_MAX_PAGE }); });
      const wanted = new Set(names);
      return new Set(pages.flat().filter((n) => wanted.has(n)));
    }),
    newTopic: wrap((topic: string) => api.newTopic(topic)),
    newClient: wrap((name: string, key: Uint8Array) => api.newClient(name, key)),
    linkClientTopic: wrap((name: string, topic: string) => api.linkClientTopic(name, topic)),
    newClientKey: wrap((name: string) => api.newClientKey(name)),
    close: () => api.close(),
  };
}

export function createProvisioningC2(opts: C2ApiOptions): ProvisioningC2 {
  return provisioningC2FromApi(new C2Api(opts));
}
