// The daily time-series chart (uPlot), sized to its container and themed from CSS variables.
import uPlot from 'uplot';
import { formatNumber, msToDate, columnLabel } from './format.js';

const HEIGHT = 260;
// integer steps only: these are counts
const INCRS = [];
for (let e = 1; e <= 1e9; e *= 10) INCRS.push(e, 2 * e, 5 * e);

const cssVar = (el, name, fallback) => getComputedStyle(el).getPropertyValue(name).trim() || fallback;

export class Chart {
  constructor(container) {
    this.el = container;
    this.plot = null;
    this.last = null;
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(container);
    this.mq = matchMedia('(prefers-color-scheme: dark)');
    this.onTheme = () => this.last && this.render(...this.last);
    this.mq.addEventListener('change', this.onTheme);
  }

  width() { return Math.max(200, Math.floor(this.el.clientWidth)); }

  resize() {
    if (!this.plot) return;
    const w = this.width();
    if (w != this.plot.width) this.plot.setSize({ width: w, height: this.height() });
  }

  height() { return innerWidth < 600 ? 200 : HEIGHT; }

  /** `columns` are the value columns, `data` is [xs (seconds), ...one array per column]. */
  render(columns, data) {
    this.last = [columns, data];
    this.destroyPlot();
    const el = this.el, n = data[0].length;
    const colors = [1, 2, 3, 4, 5].map(i => cssVar(el, `--series-${i}`, '#4a7fd6'));
    const axis = cssVar(el, '--muted', '#666'), grid = cssVar(el, '--grid', 'rgba(128,128,128,.2)');
    const ax = { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const opts = {
      width: this.width(), height: this.height(),
      tzDate: ts => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      cursor: { points: { size: 7 } },
      legend: { live: true },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, Math.ceil(max * 1.08))] } },
      series: [
        { label: 'Day', value: (u, v) => v == null ? '–' : msToDate(v * 1000) },
        ...columns.map((c, i) => ({
          label: columnLabel(c), stroke: colors[i % colors.length], width: 2,
          fill: i == 0 ? colors[0] + '22' : undefined,
          points: { show: n <= 45, size: 5 },
          value: (u, v) => v == null ? '–' : formatNumber(v)
        }))
      ],
      axes: [
        { ...ax, values: n > 1 ? undefined : (u, vals) => vals.map(v => msToDate(v * 1000)) },
        { ...ax, incrs: INCRS, size: 56, values: (u, vals) => vals.map(v => formatNumber(v)) }
      ]
    };
    // a single day has no extent: give the x scale one day of room on either side
    if (n == 1) opts.scales.x.range = () => [data[0][0] - 86400, data[0][0] + 86400];
    this.plot = new uPlot(opts, data, el);
    el.dataset.days = String(n);
  }

  destroyPlot() {
    if (this.plot) { this.plot.destroy(); this.plot = null; }
  }

  destroy() {
    this.destroyPlot();
    this.ro.disconnect();
    this.mq.removeEventListener('change', this.onTheme);
    this.last = null;
    delete this.el.dataset.days;
  }
}
