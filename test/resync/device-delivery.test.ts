// The delivery ledger's rules, fed presence notices by hand (the broker-backed cases are in
// resync-devices.test.ts): a key counts only when pushed while the device was connected and it did
// not drop off within the grace window; a first notice settles devices whose state was unknown.
import { describe, it, expect } from 'vitest';
import { PresenceBook } from '../../lib/broker-presence/broker-presence.ts';
import { DeliveryLedger, DevicePacer } from '../../backups/resync/device-delivery.ts';

function setup() {
  const book = new PresenceBook();
  const ledger = new DeliveryLedger([
    { name: 'a', clientId: 'a', topics: ['t1', 't2'] },
    { name: 'b', clientId: 'client-b', topics: ['t1'] },
  ], book, 1000);
  return { book, ledger };
}

describe('delivery ledger', () => {
  it('counts a push only while the device is connected, and not when it drops off within the grace window', () => {
    const { book, ledger } = setup();
    book.apply({ kind: 'connected', clientId: 'a', atMs: 1000 });
    ledger.recordPush('a', 't1', 2000);
    ledger.recordPush('a', 't2', 2500);
    expect(ledger.status('a')).toBe('served');
    book.apply({ kind: 'disconnected', clientId: 'a', atMs: 3000 }); // t2 went out 500 ms before: may be lost
    expect(ledger.status('a')).toBe('unserved');
    expect(ledger.reason('a')).toMatch(/1 of its 2 topic keys/);
  });

  it('settles unknown devices on their first notice: a disconnect means it was there, a connect that it was away', () => {
    const { book, ledger } = setup();
    ledger.recordPush('a', 't1', 1000);
    ledger.recordPush('a', 't2', 1000);
    ledger.recordPush('b', 't1', 1000);
    expect(ledger.status('a')).toBe('unknown');
    book.apply({ kind: 'disconnected', clientId: 'a', atMs: 10_000 });
    book.apply({ kind: 'connected', clientId: 'client-b', atMs: 10_000 });
    expect(ledger.status('a')).toBe('served');
    expect(ledger.status('b')).toBe('unserved'); // mqttClientId, not the name, is what the broker names
  });

  it('a device the broker drops messages for is unserved again; unservable devices say why', () => {
    const { book, ledger } = setup();
    book.apply({ kind: 'connected', clientId: 'client-b', atMs: 1000 });
    ledger.recordPush('b', 't1', 2000);
    expect(ledger.status('b')).toBe('served');
    book.apply({ kind: 'dropping', clientId: 'client-b', atMs: 2100 });
    expect(ledger.status('b')).toBe('unserved');
    ledger.markUnservable('a', 'identity key unknown');
    expect(ledger.notServed().sort()).toEqual(['a', 'b']);
    expect(ledger.reason('a')).toBe('identity key unknown');
  });
});

describe('per-device pacing', () => {
  it('holds the command after `burst` to one device until the window has passed', async () => {
    const pacer = new DevicePacer(5, 300);
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) await pacer.acquire('wide');
    await pacer.acquire('wide');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(299);
  });
});
