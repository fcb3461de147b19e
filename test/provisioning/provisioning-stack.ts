// PostgreSQL + Mosquitto + the real C2 for provisioning tests, with Mosquitto publishing its connect and
// subscribe notices on $SYS/broker/log (what `provision first-use` watches).
import { startC2, pickLoopbackHostFor5432, type RunningC2 } from '../../lib/servers/c2.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { startThrowawayMosquitto, defaultTestMosquittoConf, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';

export interface ProvisioningStack {
  postgres: ThrowawayPostgres;
  mosquitto: ThrowawayMosquitto;
  c2: RunningC2;
  database: string;
  stop(): Promise<void>;
}

export const PRESENCE_LOG_CONF = [
  'log_dest topic',
  'log_type error',
  'log_type warning',
  'log_type notice',
  'log_type information',
  'log_type subscribe',
  '',
].join('\n');

export async function startProvisioningStack(): Promise<ProvisioningStack> {
  const postgres = await startThrowawayPostgres({ host: await pickLoopbackHostFor5432(), port: 5432 });
  let mosquitto: ThrowawayMosquitto | undefined;
  try {
    await postgres.createDatabase('e4c2');
    mosquitto = await startThrowawayMosquitto({ confText: defaultTestMosquittoConf() + PRESENCE_LOG_CONF });
    const c2 = await startC2({ db: { host: postgres.host, database: 'e4c2', username: 'postgres' }, passphrase: 'e4ops-provisioning-test-passphrase', mqttBroker: mosquitto.url, logLevel: 'info' });
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
