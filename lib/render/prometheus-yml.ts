import YAML from 'yaml';

// prometheus.yml: static scrape jobs (job names come from dashboards/prometheus/jobs.ts via the
// stacks, so alert rules and scrape config agree) plus blackbox probe jobs.

export interface PrometheusScrapeJob {
  job: string;
  targets: string[];
  metricsPath?: string;
  scheme?: 'http' | 'https';
  /** Probe job: targets are probed through this blackbox exporter (host:port) with this module. */
  blackbox?: { exporter: string; module: string };
  labels?: Record<string, string>;
}

export interface PrometheusSettings {
  scrapeIntervalSeconds: number;
  evaluationIntervalSeconds?: number;
  /** Rule files (paths or globs as seen by Prometheus). */
  ruleFiles: string[];
  jobs: PrometheusScrapeJob[];
  externalLabels?: Record<string, string>;
}

/** Render prometheus.yml. Pure. */
export function renderPrometheusConfig(s: PrometheusSettings): string {
  const seen = new Set<string>();
  for (const j of s.jobs) {
    if (seen.has(j.job)) throw new Error(`prometheus job "${j.job}" is defined twice: merge its targets into one job`);
    seen.add(j.job);
    if (!j.targets.length) throw new Error(`prometheus job "${j.job}": no targets; drop the job or give targets`);
  }
  const doc = {
    global: {
      scrape_interval: `${s.scrapeIntervalSeconds}s`,
      evaluation_interval: `${s.evaluationIntervalSeconds ?? s.scrapeIntervalSeconds}s`,
      ...(s.externalLabels ? { external_labels: s.externalLabels } : {}),
    },
    rule_files: s.ruleFiles,
    scrape_configs: s.jobs.map((j) => {
      if (j.blackbox) {
        return {
          job_name: j.job,
          metrics_path: '/probe',
          params: { module: [j.blackbox.module] },
          static_configs: [{ targets: j.targets, ...(j.labels ? { labels: j.labels } : {}) }],
          relabel_configs: [
            { source_labels: ['__address__'], target_label: '__param_target' },
            { source_labels: ['__param_target'], target_label: 'instance' },
            { target_label: '__address__', replacement: j.blackbox.exporter },
          ],
        };
      }
      return {
        job_name: j.job,
        ...(j.metricsPath && j.metricsPath !== '/metrics' ? { metrics_path: j.metricsPath } : {}),
        ...(j.scheme && j.scheme !== 'http' ? { scheme: j.scheme } : {}),
        static_configs: [{ targets: j.targets, ...(j.labels ? { labels: j.labels } : {}) }],
      };
    }),
  };
  return '# Rendered by e4ops (lib/render/prometheus-yml.ts); edits are overwritten.\n' + YAML.stringify(doc);
}

/** blackbox_exporter's blackbox.yml from module definitions. Pure. */
export function renderBlackboxConfig(modules: Record<string, unknown>): string {
  return '# Rendered by e4ops (lib/render/prometheus-yml.ts); edits are overwritten.\n' + YAML.stringify({ modules });
}
