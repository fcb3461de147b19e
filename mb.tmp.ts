import { renderLabel } from './provisioning/device-bundle.ts';
const texts = Array.from({ length: 20000 }, (_, i) => JSON.stringify({ name: `dev-3-${i}`, id: 'a1b2c3d4e5f60718293a4b5c6d7e8f90' }));
for (const t of texts.slice(0, 2000)) renderLabel(t);
const c0 = process.cpuUsage(); let bytes = 0;
for (const t of texts) bytes += renderLabel(t).png.length;
const c = process.cpuUsage(c0); console.log(((c.user + c.system) / 1000 / texts.length).toFixed(4), 'ms', bytes / texts.length, 'png bytes');
