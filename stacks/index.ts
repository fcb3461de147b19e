// Pulumi program (Pulumi.yaml main). Reads e4ops:settings and the e4ops:<secret> keys, validates
// them (failing before any resource is registered), then declares the whole deployment.
// Stack outputs carry no secret: endpoints, replica names, MQTT ids, the CA certificate and a
// plain statement of whether the deployment survives the loss of a host.
import { REPO_ROOT } from '../lib/repo-root.ts';
import { readStackConfig } from './stack-config.ts';
import { defineStack } from './program.ts';

// Pulumi records a JavaScript stack trace for every promise and resource it creates. With tsx's
// source maps on, mapping those traces costs tens of milliseconds per resource (about 4 s for the
// HA profile); with them off, about 1 s. Settings errors carry their own messages, so source maps
// stay off while the program runs (see bench/stacks.ts).
process.setSourceMapsEnabled(false);

const { settings, secrets } = readStackConfig();
const out = defineStack(settings, secrets, { repoRoot: REPO_ROOT });

export const profile = out.profile;
export const dockerHosts = out.dockerHosts;
export const hostLossTolerance = out.hostLossTolerance;
export const c2GrpcEndpoint = out.c2GrpcEndpoint;
export const c2HttpsEndpoint = out.c2HttpsEndpoint;
export const brokerEndpoint = out.brokerEndpoint;
export const c2Replicas = out.c2Replicas;
export const caCertificatePem = out.caCertificatePem;
export const internalEndpoints = out.internalEndpoints;
export const prometheusRuleFiles = out.prometheusRuleFiles;
export const dashboardsInstallerExitCode = out.dashboardsInstallerExitCode;
