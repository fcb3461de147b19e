// The E4 protocol and C2's key store in TypeScript. See README.md section "E4 protocol library".
export * from './ids.ts';
export * from './errors.ts';
export * from './aes-siv.ts';
export * from './argon2i.ts';
export * from './keystore.ts';
export * from './protect.ts';
export * from './commands.ts';
export * from './pubkey.ts';
