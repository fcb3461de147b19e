import { describe, it, expect } from 'vitest';
import { createMemoryLogger, redactUrl } from '../../lib/log.ts';

describe('JSON logging', () => {
  it('writes one JSON object per event with time, level, event and component', () => {
    const log = createMemoryLogger('backup');
    log.info('backup.started', { target: '/srv/backups' });
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]).toMatchObject({ level: 'info', event: 'backup.started', component: 'backup', target: '/srv/backups' });
    expect(Date.parse(String(log.lines[0].time))).not.toBeNaN();
  });

  it('never writes secrets: secret-named fields and URL passwords are redacted, fingerprints and file paths are kept', () => {
    const log = createMemoryLogger();
    log.child({ run: 1 }).warn('x', {
      passphrase: 'correct horse battery staple',
      dbPassword: 'hunter2hunter2',
      passphraseFingerprint: 'ab12',
      passphraseFile: '/etc/e4/passphrase',
      databaseUrl: 'postgres://c2:s3cr3t@db:5432/e4',
      error: new Error('connect to postgres://c2:s3cr3t@db/e4 failed'),
    });
    const text = JSON.stringify(log.lines);
    expect(text).not.toContain('correct horse');
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('s3cr3t');
    expect(log.lines[0]).toMatchObject({ run: 1, passphraseFingerprint: 'ab12', passphraseFile: '/etc/e4/passphrase' });
    expect(log.lines[0].databaseUrl).toBe('postgres://c2:***@db:5432/e4');
  });

  it('leaves URLs without credentials alone', () => {
    expect(redactUrl('https://es:9200/_snapshot')).toBe('https://es:9200/_snapshot');
  });
});
