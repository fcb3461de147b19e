import * as pulumi from '@pulumi/pulumi';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import type { Placement, Member } from '../placement.ts';

// What C2 and Prometheus need from the MQTT broker, whichever it is: minimal profile Mosquitto
// (mosquitto.ts), HA profile EMQX 5.8 cluster (emqx.ts).

export interface BrokerArgs {
  settings: StackSettings;
  placement: Placement;
  brokerPassword: pulumi.Output<string>;
  emqxCookie: pulumi.Output<string>;
  emqxDashboardPassword: pulumi.Output<string>;
  /** Publish MQTT on publish.brokerAddress (default true; false behind the HA balancer, which publishes it). */
  publish?: boolean;
}

export interface BrokerEndpoint {
  /** MQTT URL C2 uses on a given host index. */
  url(host: number): string;
  /** Prometheus targets (host:port) and path. */
  metricsTargets: string[];
  metricsPath: string;
  /** host:port of every MQTT listener, as Prometheus' blackbox exporter on the internal network reaches it. */
  mqttTargets: string[];
  nodes: Member[];
}

