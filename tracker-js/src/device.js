// The `device` block. Canvas, WebGL, fonts and the time zone are measured in a Worker on
// OffscreenCanvas, off the main thread; whatever the worker could not measure (no Worker or
// OffscreenCanvas, blob: workers blocked by CSP, no WebGL in workers) is measured on the main thread
// instead (one synchronous block). UA-CH and media-device kinds are time-boxed to 500 ms.
import { hash, arch } from './lib.js';

export const W = window, N = navigator, D = document;
export const T = f => { try { return f(); } catch (e) {} };

// Automation globals on window / document: Selenium (+ chromedriver $cdc_/$wdc_ keys), Playwright,
// Puppeteer, PhantomJS, Nightmare, Cypress, Watir, Chrome's domAutomation.
const AUTO = /^(\$?[cw]dc_|__(\w*driver|p(laywright|w[A-Z]|uppeteer)|nightmare|lastWatir)|\w*[sS]elenium|(callP|_p)hantom|Cypress|domAutomation)/;

const box = p => Promise.race([p, new Promise(r => setTimeout(r, 500))]).catch(T);

/**
 * The probes that work without the DOM: adds tz, webgl, canvas, fonts to x unless x already has
 * them (a probe that throws is left out). Self-contained: uses only its arguments and globals that
 * workers have too, because its source text is also run inside the worker. h is the hash
 * function; l: keep the detected font names.
 */
const probes = (h, l, x = {}) => {
  // 300×150: <canvas> on the main thread, OffscreenCanvas in the worker
  const mk = () => self.document?.createElement('canvas') || new OffscreenCanvas(300, 150);
  const draw = () => {
    const x = mk().getContext('2d'), g = x.createLinearGradient(0, 0, 200, 0);
    g.addColorStop(0, '#f60'); g.addColorStop(1, '#09c');
    x.fillStyle = g; x.fillRect(0, 0, 200, 50);
    x.font = '16px Arial'; x.fillStyle = '#147'; x.fillText('Cwm fjord \u{1F603}\u03a9', 4, 20);
    x.arc(150, 25, 20, 0, 7); x.stroke();
    return h(x.getImageData(0, 0, 200, 50).data.join());
  };
  const p = {
    tz: () => Intl.DateTimeFormat().resolvedOptions().timeZone,
    webgl: () => {
      const g = mk().getContext('webgl'), e = g.getExtension('WEBGL_debug_renderer_info'), p = k => '' + g.getParameter(k);
      return {
        vendor: p(e ? 37445 : 7936), renderer: p(e ? 37446 : 7937),
        // MAX_TEXTURE_SIZE, MAX_VIEWPORT_DIMS, MAX_VERTEX_UNIFORM_VECTORS, MAX_FRAGMENT_UNIFORM_VECTORS,
        // MAX_COMBINED_TEXTURE_IMAGE_UNITS, ALIASED_LINE_WIDTH_RANGE, ALIASED_POINT_SIZE_RANGE,
        // SHADING_LANGUAGE_VERSION, VERSION + sorted extension list
        h: h([3379, 3386, 36347, 36349, 35661, 33902, 33901, 35724, 7938].map(p) + g.getSupportedExtensions().sort())
      };
    },
    canvas: (c = draw()) => ({ h: c, stable: c == draw() }),
    // 44 fonts that differ between Windows, macOS, Linux, Android and office installs
    fonts: () => {
      const x = mk().getContext('2d'), B = ['monospace', 'sans-serif', 'serif'];
      const w = f => (x.font = '72px ' + f, x.measureText('mmmmmmmmmmlli').width), base = B.map(w);
      const f = ('Arial,Calibri,Cambria,Candara,Consolas,Constantia,Corbel,Courier New,Georgia,' +
        'Impact,Segoe UI,Tahoma,Verdana,Wingdings,Marlett,Sylfaen,SimSun,' +
        'MS Gothic,Meiryo,Bahnschrift,Lucida Console,Comic Sans MS,Times New Roman,' +
        'Trebuchet MS,Garamond,Century Gothic,Helvetica,Helvetica Neue,Menlo,Monaco,Geneva,Optima,' +
        'Futura,Avenir,Didot,Papyrus,Zapfino,Chalkboard,DejaVu Sans,Liberation Sans,Ubuntu,' +
        'Cantarell,Noto Sans,Roboto').split(',').filter(f => B.some((b, i) => w('"' + f + '",' + b) != base[i]));
      return { h: h(f + ''), n: f.length, list: l ? f : undefined };
    }
  };
  for (const k in p) if (!(k in x)) try { x[k] = p[k](); } catch (e) {}
  return x;
};

/**
 * Runs the probes in a blob: Worker; resolves with what it measured ({} if it could not start).
 * Without OffscreenCanvas only `tz` succeeds there.
 */
const off = l => new Promise((r, j) => {
  const w = new Worker(URL.createObjectURL(new Blob([`postMessage((${probes})(${hash},${l}));close()`])));
  w.onmessage = m => r(m.data);
  w.onerror = j;
}).catch(T);

const automation = pl => {
  const ua = N.userAgent, cr = /Chrome/.test(ua);
  return {
    webdriver: !!N.webdriver,
    headless: [/HeadlessChrome/.test(ua) && 'ua', cr && !W.chrome && 'no_chrome_obj'].filter(Boolean),
    flags: [!(W.outerWidth && W.outerHeight) && 'zero_outer', !N.languages?.length && 'no_langs',
      cr && !/Mobile/.test(ua) && !pl?.length && 'no_plugins'].filter(Boolean),
    globals: [...Object.getOwnPropertyNames(W), ...Object.keys(D)].filter(AUTO.test, AUTO) // (AUTO has no /g flag) server truncates (16 × 32)
  };
};

/** Collects the device block (synchronously: basics, automation scan, starting the worker). */
export const collect = l => {
  const s = screen, ud = N.userAgentData, d = {
    tzo: -new Date().getTimezoneOffset(),
    langs: N.languages || [N.language], // server truncates (32 × 35)
    screen: { w: s.width, h: s.height, aw: s.availWidth, ah: s.availHeight, cd: s.colorDepth, dpr: W.devicePixelRatio },
    vp: { w: W.innerWidth, h: W.innerHeight },
    win: { x: W.screenX, y: W.screenY, ow: W.outerWidth, oh: W.outerHeight },
    platform: N.platform,
    cores: N.hardwareConcurrency, mem: N.deviceMemory, touch: N.maxTouchPoints,
    // guarded: privacy tools may make navigator.plugins a throwing getter; server truncates (32 × 128)
    plugins: T(() => [].map.call(N.plugins, p => p.name)),
    activex: 'ActiveXObject' in W
  };
  d.auto = automation(d.plugins);
  return Promise.all([
    // what the worker could not measure: on the main thread
    off(l).then(x => Object.assign(d, probes(hash, l, x))),
    box(ud?.getHighEntropyValues(['architecture', 'bitness', 'platformVersion', 'model', 'fullVersionList'])),
    box(N.mediaDevices?.enumerateDevices())
  ]).then(([, u, m]) => {
    [d.arch, d.bits, d.arch_src] = u?.architecture ? [u.architecture, u.bitness, 'uach'] // '' = unknown
      : arch(d.platform, N.userAgent, d.webgl?.renderer);
    if (ud) d.uach = {
      brands: (u?.fullVersionList || ud.brands).map(b => b.brand + '/' + b.version),
      mobile: ud.mobile, platform: ud.platform, pv: u?.platformVersion, model: u?.model
    };
    if (m) {
      d.media = { ai: 0, vi: 0, ao: 0 };
      for (const x of m) d.media[x.kind[0] + x.kind[5]]++; // audioinput/videoinput/audiooutput
    }
    return d;
  });
};
