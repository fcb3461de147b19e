// The resync's view of C2 (ResyncC2) on top of the shared API client lib/c2/c2-api.ts. The client's
// own retries are kept to one attempt: the resync retries per topic itself, journalling each try.
import { C2Api, C2RouteMissingError, type C2ApiOptions } from '../../lib/c2/c2-api.ts';
import { isTransientC2Error } from '../../lib/c2/c2-transient-error.ts';
import type { ResyncC2 } from './resync-topic-keys.ts';

export { isTransientC2Error };

export function resyncC2FromApi(api: C2Api): ResyncC2 {
  return {
    endpoint: api.opts.baseUrl,
    countClients: () => api.countClients(),
    countTopics: () => api.countTopics(),
    listTopics: () => api.allTopics(),
    listClients: () => api.allClients(),
    topicsOfClient: (name) => api.allTopicsForClient(name),
    clientsOfTopic: (topic) => api.allClientsForTopic(topic),
    // The 2020 C2 (which serves /e4/crypto-mode) sends SetTopicKey to every linked client on NewTopic;
    // the 2019 C2 (no such route) only stores the new key.
    rotationPushesKeys: async () => {
      try { await api.cryptoMode(); return true; } catch (e) {
        if (e instanceof C2RouteMissingError) return false;
        throw e;
      }
    },
    newTopic: (topic) => api.newTopic(topic),
    newClient: (name, key) => api.newClient(name, key),
    linkClientTopic: (name, topic) => api.linkClientTopic(name, topic),
    isTransientError: isTransientC2Error,
  };
}

/** A C2 API client set up for a resync (single attempt per call; the resync retries). */
export function createResyncC2(opts: C2ApiOptions): { c2: ResyncC2; api: C2Api } {
  const api = new C2Api({ retries: 1, ...opts });
  return { c2: resyncC2FromApi(api), api };
}
