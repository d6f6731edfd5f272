// The `device` block. The synchronous part (canvas, fonts, WebGL, automation scan) runs once in
// an idle callback (the browser test times that callback); the async part
// (UA-CH high-entropy values, media-device kinds) is time-boxed to 100 ms.
import { hash, arch } from './lib.js';

export const W = window, N = navigator, D = document;
export const T = f => { try { return f(); } catch (e) {} };

// 44 fonts that differ between Windows, macOS, Linux, Android and office installs.
const FONTS = ('Arial,Calibri,Cambria,Candara,Consolas,Constantia,Corbel,Courier New,Georgia,' +
  'Impact,Segoe UI,Tahoma,Verdana,Wingdings,Marlett,Sylfaen,SimSun,' +
  'MS Gothic,Meiryo,Bahnschrift,Lucida Console,Comic Sans MS,Times New Roman,' +
  'Trebuchet MS,Garamond,Century Gothic,Helvetica,Helvetica Neue,Menlo,Monaco,Geneva,Optima,' +
  'Futura,Avenir,Didot,Papyrus,Zapfino,Chalkboard,DejaVu Sans,Liberation Sans,Ubuntu,' +
  'Cantarell,Noto Sans,Roboto').split(',');

// Automation globals on window / document: Selenium (+ chromedriver $cdc_/$wdc_ keys), Playwright,
// Puppeteer, PhantomJS, Nightmare, Cypress, Watir, Chrome's domAutomation.
const AUTO = /^(\$?cdc_|\$wdc_|__((web|fx)?driver|selenium|playwright|pw[A-Z]|puppeteer|nightmare|lastWatir)|_?[sS]elenium|call(Selenium|Phantom)|_phantom|Cypress|domAutomation)/;

const canvas = () => D.createElement('canvas');
const box = p => Promise.race([p, new Promise(r => setTimeout(r, 100))]).catch(() => {});

const draw = () => {
  const c = canvas();
  c.width = 200; c.height = 50;
  const x = c.getContext('2d'), g = x.createLinearGradient(0, 0, 200, 0);
  g.addColorStop(0, '#f60'); g.addColorStop(1, '#09c');
  x.fillStyle = g; x.fillRect(0, 0, 200, 50);
  x.font = '16px Arial'; x.fillStyle = '#147'; x.fillText('Cwm fjord \u{1F603}\u03a9', 4, 20);
  x.arc(150, 25, 20, 0, 7); x.stroke();
  return hash(c.toDataURL());
};

const fonts = list => {
  const x = canvas().getContext('2d'), B = ['monospace', 'sans-serif', 'serif'];
  const w = f => (x.font = '72px ' + f, x.measureText('mmmmmmmmmmlli').width);
  const base = B.map(w), f = FONTS.filter(f => B.some((b, i) => w('"' + f + '",' + b) != base[i]));
  return { h: hash(f + ''), n: f.length, list: list ? f : undefined };
};

const webgl = () => {
  const g = canvas().getContext('webgl'), e = g.getExtension('WEBGL_debug_renderer_info');
  const p = k => '' + g.getParameter(k);
  return {
    vendor: p(e ? 37445 : 7936), renderer: p(e ? 37446 : 7937),
    // MAX_TEXTURE_SIZE, MAX_VIEWPORT_DIMS, MAX_VERTEX_UNIFORM_VECTORS, MAX_FRAGMENT_UNIFORM_VECTORS,
    // MAX_COMBINED_TEXTURE_IMAGE_UNITS, ALIASED_LINE_WIDTH_RANGE, ALIASED_POINT_SIZE_RANGE,
    // SHADING_LANGUAGE_VERSION, VERSION + sorted extension list
    h: hash([3379, 3386, 36347, 36349, 35661, 33902, 33901, 35724, 7938].map(p) +
      g.getSupportedExtensions().sort())
  };
};

const automation = () => {
  const ua = N.userAgent, cr = /Chrome/.test(ua), h = [], f = [];
  /HeadlessChrome/.test(ua) && h.push('ua');
  cr && !W.chrome && h.push('no_chrome_obj');
  W.outerWidth && W.outerHeight || f.push('zero_outer');
  N.languages?.length || f.push('no_langs');
  cr && !/Mobile/.test(ua) && !N.plugins?.length && f.push('no_plugins');
  return {
    webdriver: !!N.webdriver, headless: h, flags: f,
    globals: Object.getOwnPropertyNames(W).concat(Object.keys(D)).filter(k => AUTO.test(k)).slice(0, 16)
  };
};

/** Runs f in an idle callback (setTimeout fallback); resolves with its result (undefined if it threw). */
export const idle = f => new Promise(r => (W.requestIdleCallback || setTimeout)(() => r(T(f)), { timeout: 2000 }));

/**
 * Collects the device block. Main-thread work is split into idle slices, one per step below
 * (after this call's own slice: basics + automation scan); the async part is time-boxed to 100 ms.
 */
export const collect = fontList => {
  const s = screen, ud = N.userAgentData, md = N.mediaDevices, d = {
    tzo: -new Date().getTimezoneOffset(),
    langs: (N.languages || [N.language]).slice(0, 32),
    screen: { w: s.width, h: s.height, aw: s.availWidth, ah: s.availHeight, cd: s.colorDepth, dpr: W.devicePixelRatio },
    vp: { w: W.innerWidth, h: W.innerHeight },
    win: { x: W.screenX, y: W.screenY, ow: W.outerWidth, oh: W.outerHeight },
    platform: N.platform,
    cores: N.hardwareConcurrency, mem: N.deviceMemory, touch: N.maxTouchPoints,
    plugins: [].map.call(N.plugins || [], p => p.name).slice(0, 32),
    activex: 'ActiveXObject' in W,
    auto: T(automation)
  };
  let c;
  return [
    () => d.webgl = webgl(),
    () => d.tz = Intl.DateTimeFormat().resolvedOptions().timeZone, // first Intl use: ICU init
    () => c = draw(),
    () => d.canvas = { h: c, stable: c == draw() },
    () => d.fonts = fonts(fontList)
  ].reduce((p, f) => p.then(() => idle(f)), Promise.resolve()).then(() => Promise.all([
    box(ud?.getHighEntropyValues(['architecture', 'bitness', 'platformVersion', 'model', 'fullVersionList'])),
    box(md?.enumerateDevices())
  ])).then(([u, m]) => {
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
