// Provisioning's view of C2 on the shared API client (lib/c2/c2-api.ts): what it asks C2 and the one
// question it must settle first, which crypto mode this C2 build serves.
import { C2Api, C2ApiError, C2RouteMissingError, type C2ApiOptions } from '../lib/c2/c2-api.ts';

export interface ProvisioningC2 {
  endpoint: string;
  /** 'symkey-only' when the build has no /e4/crypto-mode (the 2019 C2: no pubkey mode at all). */
  cryptoMode(): Promise<'symkey' | 'pubkey' | 'symkey-only'>;
  topics(): Promise<string[]>;
  clients(): Promise<string[]>;
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
    clients: wrap(() => api.allClients()),
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
