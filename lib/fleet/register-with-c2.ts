import type { C2Api } from '../c2/c2-api.ts';
import type { SimulatedDevice } from './simulated-device.ts';

/**
 * Register simulated devices with C2 (NewClient with each device's key) and link each to the topics
 * (creating missing topics first; C2 then sends SetTopicKey to the device). Bounded concurrency.
 */
export async function registerDevicesWithC2(
  api: C2Api,
  devices: SimulatedDevice[],
  opts: { topics?: string[]; concurrency?: number } = {},
): Promise<{ clients: number; links: number }> {
  const topics = opts.topics ?? [];
  const existing = new Set(topics.length ? await api.allTopics() : []);
  for (const t of topics) if (!existing.has(t)) await api.newTopic(t);
  let next = 0;
  let links = 0;
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 8, devices.length) }, async () => {
    while (next < devices.length) {
      const d = devices[next++];
      await api.newClient(d.name, d.keyForC2);
      for (const t of topics) { await api.linkClientTopic(d.name, t); links++; }
    }
  }));
  return { clients: devices.length, links };
}
