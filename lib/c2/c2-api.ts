import https from 'node:https';
import { createLogger, type Logger } from '../log.ts';

// Typed client for C2's JSON gateway over HTTPS (grpc-gateway in front of C2's gRPC API).
// Every route of the 2020 C2 API plus the older SendMessage route; routes a given C2 build does not
// serve fail with C2RouteMissingError (HTTP 404 with grpc-gateway's "Not Found" body). Lists are paged
// (at most 100 per page, `offset` and `count` query parameters), transient failures (connection errors,
// 502/503/504, gRPC Unavailable) are retried with exponential backoff, and any other non-2xx answer
// throws C2ApiError naming the route and C2's own message.

export const C2_MAX_PAGE = 100;

export type C2CryptoModeName = 'symkey' | 'pubkey' | 'undefined';

export interface C2ApiOptions {
  /** https://host:8888 */
  baseUrl: string;
  /** PEM of the CA that signed C2's HTTP certificate. */
  ca?: string | Buffer;
  /** Client certificate/key, if a proxy in front of C2 wants them. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Attempts for transient errors (default 5), first backoff (default 200 ms, doubling, max 5 s). */
  retries?: number;
  backoffMs?: number;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  logger?: Logger;
}

export class C2ApiError extends Error {
  constructor(
    readonly route: string,
    readonly status: number,
    readonly c2Message: string,
    readonly grpcCode?: number,
  ) {
    super(`C2 ${route} failed: HTTP ${status}${grpcCode !== undefined ? ` (gRPC code ${grpcCode})` : ''}: ${c2Message || '(no message)'}`);
    this.name = 'C2ApiError';
  }
}

/** The route exists in the 2020 C2 API but this C2 build does not serve it. */
export class C2RouteMissingError extends C2ApiError {
  constructor(route: string) {
    super(route, 404, 'route not served by this C2 build (older C2?)');
    this.name = 'C2RouteMissingError';
  }
}

interface RawResponse { status: number; body: string }

const TRANSIENT_STATUS = new Set([502, 503, 504]);
const GRPC_UNAVAILABLE = 14;
const GRPC_NOT_FOUND = 5;

/** Path-encode a topic: C2 routes take `{topic=**}`, so slashes stay as separators. */
function topicPath(topic: string): string {
  if (!topic) throw new Error('topic name is empty');
  return topic.split('/').map(encodeURIComponent).join('/');
}

function clientPath(name: string): string {
  if (!name) throw new Error('client name is empty');
  return encodeURIComponent(name);
}

function toNumber(v: unknown, route: string): number {
  const n = typeof v === 'string' ? Number(v) : typeof v === 'number' ? v : v === undefined ? 0 : NaN;
  if (!Number.isFinite(n)) throw new C2ApiError(route, 200, `unexpected count value ${JSON.stringify(v)}`);
  return n;
}

export interface Page { offset?: number; count?: number }

export class C2Api {
  private readonly agent: https.Agent;
  private readonly base: URL;
  private readonly log: Logger;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly timeoutMs: number;

  constructor(readonly opts: C2ApiOptions) {
    this.base = new URL(opts.baseUrl);
    if (this.base.protocol !== 'https:') throw new Error(`C2 API base URL "${opts.baseUrl}" must be https:// (C2's gateway is TLS only)`);
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 16, ca: opts.ca, cert: opts.cert, key: opts.key });
    this.log = opts.logger ?? createLogger({ component: 'c2-api' });
    this.retries = opts.retries ?? 5;
    this.backoffMs = opts.backoffMs ?? 200;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  close(): void {
    this.agent.destroy();
  }

  private once(method: string, path: string, body?: unknown): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = https.request(new URL(path, this.base), {
        method,
        agent: this.agent,
        timeout: this.timeoutMs,
        headers: {
          accept: 'application/json',
          ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
        },
      }, (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error(`timeout after ${this.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** One API call with retries on transient failures; returns the parsed JSON body. */
  async call<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    const route = `${method} ${path.split('?')[0]}`;
    let delay = this.backoffMs;
    for (let attempt = 1; ; attempt++) {
      let res: RawResponse | undefined;
      let transient: string | undefined;
      try {
        res = await this.once(method, path, body);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        // TLS verification failures are not transient: report them at once.
        if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) {
          throw new C2ApiError(route, 0, `TLS: ${(err as Error).message} (give the CA that signed C2's http-cert)`);
        }
        transient = `${code || 'error'}: ${(err as Error).message}`;
      }
      let parsed: Record<string, unknown> = {};
      if (res) {
        try { parsed = res.body ? JSON.parse(res.body) : {}; } catch { parsed = { message: res.body.slice(0, 500) }; }
        if (res.status >= 200 && res.status < 300) return parsed as T;
        const grpcCode = typeof parsed.code === 'number' ? parsed.code : undefined;
        if (TRANSIENT_STATUS.has(res.status) || grpcCode === GRPC_UNAVAILABLE) transient = `HTTP ${res.status}`;
        else {
          const message = String(parsed.message ?? parsed.error ?? res.body ?? '').trim();
          if (res.status === 404 && grpcCode === undefined && /^not found$/i.test(message)) throw new C2RouteMissingError(route);
          throw new C2ApiError(route, res.status, message, grpcCode);
        }
      }
      if (attempt >= this.retries) {
        throw new C2ApiError(route, res?.status ?? 0, `gave up after ${attempt} attempts: ${transient}`);
      }
      this.log.warn('c2_api_retry', { route, attempt, reason: transient, delayMs: delay });
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  }

  /** Walk a paged list route: pages of at most 100 until a short page. */
  private async all<T>(fetchPage: (offset: number, count: number) => Promise<T[]>, pageSize = C2_MAX_PAGE): Promise<T[]> {
    const size = Math.min(Math.max(1, pageSize), C2_MAX_PAGE);
    const out: T[] = [];
    for (let offset = 0; ; offset += size) {
      const page = await fetchPage(offset, size);
      out.push(...page);
      if (page.length < size) return out;
    }
  }

  private static pageQuery(p: Page = {}): string {
    const count = Math.min(p.count ?? C2_MAX_PAGE, C2_MAX_PAGE);
    return `?offset=${p.offset ?? 0}&count=${count}`;
  }

  // ---- clients ----
  /** NewClient: creates or overwrites the client with this 32-byte identity key (symkey) or Ed25519 public key (pubkey). */
  async newClient(name: string, key: Uint8Array): Promise<void> {
    await this.call('POST', `/e4/client/${clientPath(name)}`, { client: { name }, key: Buffer.from(key).toString('base64') });
  }
  async removeClient(name: string): Promise<void> { await this.call('DELETE', `/e4/client/${clientPath(name)}`); }
  /** ResetClient: C2 sends ResetTopics to the device (DB links kept). */
  async resetClient(name: string): Promise<void> { await this.call('PUT', `/e4/client/${clientPath(name)}`); }
  /** NewClientKey: C2 sends SetIdKey sealed with the old key, then stores the new key. */
  async newClientKey(name: string): Promise<void> { await this.call('PATCH', `/e4/client/${clientPath(name)}`, { client: { name } }); }
  async countClients(): Promise<number> {
    return toNumber((await this.call('GET', '/e4/clients/count')).count, 'GET /e4/clients/count');
  }
  async listClients(page?: Page): Promise<string[]> {
    const r = await this.call<{ clients?: { name: string }[] }>('GET', `/e4/clients${C2Api.pageQuery(page)}`);
    return (r.clients ?? []).map((c) => c.name);
  }
  async allClients(pageSize?: number): Promise<string[]> { return this.all((offset, count) => this.listClients({ offset, count }), pageSize); }

  // ---- topics ----
  /** NewTopic: creates the topic, or ROTATES it if it exists (new key sent to every linked client). */
  async newTopic(topic: string): Promise<void> { await this.call('POST', `/e4/topic/${topicPath(topic)}`); }
  async removeTopic(topic: string): Promise<void> { await this.call('DELETE', `/e4/topic/${topicPath(topic)}`); }
  async countTopics(): Promise<number> {
    return toNumber((await this.call('GET', '/e4/topics/count')).count, 'GET /e4/topics/count');
  }
  async listTopics(page?: Page): Promise<string[]> {
    return (await this.call<{ topics?: string[] }>('GET', `/e4/topics${C2Api.pageQuery(page)}`)).topics ?? [];
  }
  async allTopics(pageSize?: number): Promise<string[]> { return this.all((offset, count) => this.listTopics({ offset, count }), pageSize); }

  // ---- client ↔ topic ----
  /** Link a client to a topic; C2 sends it SetTopicKey. Repeatable (sends the key again). */
  async linkClientTopic(name: string, topic: string): Promise<void> {
    await this.call('PUT', `/e4/client/${clientPath(name)}/topic/${topicPath(topic)}`);
  }
  /** Unlink; C2 sends RemoveTopic to the client. */
  async unlinkClientTopic(name: string, topic: string): Promise<void> {
    await this.call('DELETE', `/e4/client/${clientPath(name)}/topic/${topicPath(topic)}`);
  }
  async countTopicsForClient(name: string): Promise<number> {
    const route = `/e4/client/${clientPath(name)}/topics/count`;
    return toNumber((await this.call('GET', route)).count, `GET ${route}`);
  }
  /** Whether C2 has a client of this name (a 404 with gRPC NotFound says it has not). */
  async hasClient(name: string): Promise<boolean> {
    try {
      await this.countTopicsForClient(name);
      return true;
    } catch (e) {
      if (e instanceof C2ApiError && e.status === 404 && e.grpcCode === GRPC_NOT_FOUND) return false;
      throw e;
    }
  }
  async listTopicsForClient(name: string, page?: Page): Promise<string[]> {
    return (await this.call<{ topics?: string[] }>('GET', `/e4/client/${clientPath(name)}/topics${C2Api.pageQuery(page)}`)).topics ?? [];
  }
  async allTopicsForClient(name: string, pageSize?: number): Promise<string[]> {
    return this.all((offset, count) => this.listTopicsForClient(name, { offset, count }), pageSize);
  }
  async countClientsForTopic(topic: string): Promise<number> {
    const route = `/e4/topic/${topicPath(topic)}/clients/count`;
    return toNumber((await this.call('GET', route)).count, `GET ${route}`);
  }
  async listClientsForTopic(topic: string, page?: Page): Promise<string[]> {
    const r = await this.call<{ clients?: { name: string }[] }>('GET', `/e4/topic/${topicPath(topic)}/clients${C2Api.pageQuery(page)}`);
    return (r.clients ?? []).map((c) => c.name);
  }
  async allClientsForTopic(topic: string, pageSize?: number): Promise<string[]> {
    return this.all((offset, count) => this.listClientsForTopic(topic, { offset, count }), pageSize);
  }

  // ---- client ↔ client (pubkey mode, 2020 C2) ----
  async linkClient(source: string, target: string): Promise<void> {
    await this.call('POST', `/e4/client/${clientPath(target)}/link/${clientPath(source)}`);
  }
  async unlinkClient(source: string, target: string): Promise<void> {
    await this.call('DELETE', `/e4/client/${clientPath(target)}/unlink/${clientPath(source)}`);
  }
  async countLinkedClients(name: string): Promise<number> {
    const route = `/e4/client/${clientPath(name)}/link/count`;
    return toNumber((await this.call('GET', route)).count, `GET ${route}`);
  }
  async listLinkedClients(name: string, page?: Page): Promise<string[]> {
    const r = await this.call<{ clients?: { name: string }[] }>('GET', `/e4/client/${clientPath(name)}/link${C2Api.pageQuery(page)}`);
    return (r.clients ?? []).map((c) => c.name);
  }
  async allLinkedClients(name: string, pageSize?: number): Promise<string[]> {
    return this.all((offset, count) => this.listLinkedClients(name, { offset, count }), pageSize);
  }
  async sendClientPubKey(source: string, target: string): Promise<void> {
    await this.call('POST', '/e4/send-client-pubkey', { sourceClient: { name: source }, targetClient: { name: target } });
  }
  async removeClientPubKey(source: string, target: string): Promise<void> {
    await this.call('POST', '/e4/remove-client-pubkey', { sourceClient: { name: source }, targetClient: { name: target } });
  }
  async resetClientPubKeys(target: string): Promise<void> {
    await this.call('POST', '/e4/reset-client-pubkeys', { targetClient: { name: target } });
  }
  /** Pubkey mode: rotate C2's key. Known C2 bug: only the first 100 clients receive SetC2Key. */
  async newC2Key(): Promise<void> { await this.call('POST', '/e4/new-c2-key', { force: true }); }

  // ---- messages ----
  /** 2020 C2: protect `data` with the topic's key; returns the protected bytes. */
  async protectMessage(topic: string, data: Uint8Array): Promise<Buffer> {
    const r = await this.call<{ protectedBinaryData?: string }>('POST', '/e4/protect-message', { topic, binaryData: Buffer.from(data).toString('base64') });
    return Buffer.from(r.protectedBinaryData ?? '', 'base64');
  }
  async unprotectMessage(topic: string, protectedData: Uint8Array): Promise<Buffer> {
    const r = await this.call<{ binaryData?: string }>('POST', '/e4/unprotect-message', { topic, protectedBinaryData: Buffer.from(protectedData).toString('base64') });
    return Buffer.from(r.binaryData ?? '', 'base64');
  }
  /** Older C2 (2019): C2 protects `message` with the topic key and publishes it on the topic. */
  async sendMessage(topic: string, message: string): Promise<void> {
    await this.call('POST', '/e4/message', { topic, message });
  }

  // ---- service ----
  /** GET /e4/health-check ({Code, Status}); it only proves the process serves HTTP. */
  async healthCheck(): Promise<{ code: number; status: string }> {
    const r = await this.call<{ Code?: string | number; Status?: string }>('GET', '/e4/health-check');
    return { code: Number(r.Code ?? 0), status: String(r.Status ?? '') };
  }
  async cryptoMode(): Promise<C2CryptoModeName> {
    const r = await this.call<{ CryptoMode?: string | number }>('GET', '/e4/crypto-mode');
    const m = r.CryptoMode;
    if (m === 'CRYPTOMODE_SYMKEY' || m === 1) return 'symkey';
    if (m === 'CRYPTOMODE_PUBKEY' || m === 2) return 'pubkey';
    return 'undefined';
  }
}

export function createC2Api(opts: C2ApiOptions): C2Api {
  return new C2Api(opts);
}
