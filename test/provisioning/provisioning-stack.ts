// PostgreSQL + Mosquitto + the real C2 for provisioning tests. Mosquitto runs the rendered mosquitto.conf
// (lib/render/mosquitto-conf.ts), whose $SYS/broker/log notices (connects, subscriptions) are what
// `provision first-use` watches: the test shows the deployed broker config is enough.
import { startC2, pickLoopbackHostFor5432, type RunningC2 } from '../../lib/servers/c2.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { renderMosquittoConf } from '../../lib/render/mosquitto-conf.ts';

/** C2's database passphrase in these tests: lets a test open the keys C2 stored. */
export const PROVISIONING_TEST_PASSPHRASE = 'e4ops-provisioning-test-passphrase';

export interface ProvisioningStack {
  postgres: ThrowawayPostgres;
  mosquitto: ThrowawayMosquitto;
  c2: RunningC2;
  database: string;
  stop(): Promise<void>;
}

export async function startProvisioningStack(): Promise<ProvisioningStack> {
  const postgres = await startThrowawayPostgres({ host: await pickLoopbackHostFor5432(), port: 5432 });
  let mosquitto: ThrowawayMosquitto | undefined;
  try {
    await postgres.createDatabase('e4c2');
    mosquitto = await startThrowawayMosquitto({ confText: renderMosquittoConf({ listeners: [{ port: '{{PORT}}', address: '{{HOST}}' }], persistenceDir: '{{DIR}}', allowAnonymous: true }) });
    const c2 = await startC2({ db: { host: postgres.host, database: 'e4c2', username: 'postgres' }, passphrase: PROVISIONING_TEST_PASSPHRASE, mqttBroker: mosquitto.url, logLevel: 'info' });
    const mq = mosquitto;
    return {
      postgres, mosquitto: mq, c2, database: 'e4c2',
      async stop() { await c2.stop(); await mq.stop(); await postgres.stop(); },
    };
  } catch (e) {
    await mosquitto?.stop();
    await postgres.stop();
    throw e;
  }
}
