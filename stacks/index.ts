// Pulumi program (Pulumi.yaml main). Reads e4ops:settings and the e4ops:<secret> keys, validates
// them (failing before any resource is registered), then declares the whole deployment.
// Stack outputs carry no secret: endpoints, replica names, MQTT ids, the CA certificate and a
// plain statement of whether the deployment survives the loss of a host.
import { runStackProgram } from './stack-program.ts';

const out = runStackProgram();

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
