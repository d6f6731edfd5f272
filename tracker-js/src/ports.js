// footfall-ports.js: optional, loaded by footfall.js only for identified users on sites that set
// data-ports and only when fingerprinting is allowed. Probes a short list of loopback ports once
// per session, in idle time, within 1.5 s, and reports via footfall('event', 'ports', {...}).
import { portList } from './lib.js';

(() => { try {
  const W = window, N = navigator, D = document;
  // port list: own data-ports, else the data-ports of the main footfall.js tag that loaded us
  const list = portList((D.currentScript || {}).dataset?.ports || D.querySelector('script[data-ports]')?.dataset.ports);
  if (!list.length) return;
  const report = v => {
    const r = {};
    list.forEach((p, i) => r[p] = typeof v == 'string' ? v : v[i]);
    (W.footfall = W.footfall || function () { (W.footfall.q = W.footfall.q || []).push(arguments); })('event', 'ports', r);
  };
  // Can we probe without any prompt? Pages on loopback are not subject to Local Network Access.
  const allowed = async () => {
    if (/^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(location.hostname)) return 1;
    if (!W.isSecureContext) return 0; // LNA: insecure public pages may not reach loopback at all
    const P = N.permissions;
    for (const name of ['loopback-network', 'local-network-access', 'local-network']) {
      try { return (await P.query({ name })).state == 'granted'; } catch (e) { /* unknown name */ }
    }
    const ua = N.userAgent, m = /Chrom(e|ium)\/(\d+)/.exec(ua);
    if (m) return +m[2] < 141; // Chromium with LNA but no queryable permission: never risk a prompt
    return !/Safari/.test(ua) || /Firefox/.test(ua); // Safari blocks http://127.0.0.1 from https pages
  };
  const probe = p => new Promise(res => {
    const c = new AbortController(), t = setTimeout(() => c.abort(), 1000);
    fetch('http://127.0.0.1:' + p + '/', { mode: 'no-cors', signal: c.signal, cache: 'no-store', credentials: 'omit' })
      .then(() => 'open', () => c.signal.aborted ? 'blocked' : 'closed')
      .then(v => { clearTimeout(t); res(v); });
  });
  const run = () => allowed().then(ok => ok
    ? Promise.race([
        Promise.all(list.map(probe)),
        new Promise(r => setTimeout(() => r('blocked'), 1400))
      ])
    : 'blocked').then(report, () => report('blocked'));
  (W.requestIdleCallback || setTimeout)(run, { timeout: 3000 });
} catch (e) {} })();
