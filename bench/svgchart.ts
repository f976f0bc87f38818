// A small SVG writer for the benches' line charts: panels side by side, each
// with its title and x axis title, a logarithmic x axis per panel (the
// benches grow their axes geometrically), one logarithmic y axis of ratios
// shared by all panels, and a legend below them. Written here
// rather than rendered with a charting library: three panels of four lines
// need no layout engine, and the output is plain text that diffs well.

export interface Series {
  label: string;
  /** null: no value at that x (the line breaks). */
  y: readonly (number | null)[];
}

export interface Panel {
  title: string;
  /** The x axis's title, with its unit. */
  xLabel: string;
  x: readonly number[];
  series: readonly Series[];
}

export interface Charts {
  title: string;
  /** The y axis's title, with its unit, shared by the panels. */
  yLabel: string;
  panels: readonly Panel[];
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#7f7f7f', '#d62728', '#9467bd'];
const PANEL_W = 360;
const PANEL_H = 260;
const MARGIN = { left: 80, right: 20, top: 50, bottom: 60 };
const LEGEND_ROW = 22;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const num = (x: number) => (Math.round(x * 10) / 10).toString();

function tickLabel(v: number): string {
  if (v >= 1e6) return `${v / 1e6}M`;
  if (v >= 1e3) return `${v / 1e3}k`;
  return String(v);
}

/** Line charts of ratios: y on a log2 scale with a rule at 1. */
export function lineChartsSvg(c: Charts): string {
  const ys = c.panels.flatMap((p) => p.series.flatMap((s) => s.y.filter((v): v is number => v !== null && v > 0 && Number.isFinite(v))));
  const lo = Math.floor(Math.log2(Math.min(1, ...ys)));
  const hi = Math.max(lo + 1, Math.ceil(Math.log2(Math.max(1, ...ys))));
  const width = MARGIN.left + c.panels.length * (PANEL_W + MARGIN.left + MARGIN.right);
  const labels = c.panels[0]?.series.map((s) => s.label) ?? [];
  const perRow = 2;
  const height = MARGIN.top + PANEL_H + MARGIN.bottom + LEGEND_ROW * Math.ceil(labels.length / perRow) + 10;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(c.title)}</text>`,
  ];
  c.panels.forEach((p, pi) => {
    const x0 = MARGIN.left + pi * (PANEL_W + MARGIN.left + MARGIN.right);
    const y0 = MARGIN.top;
    const lx = p.x.map((v) => Math.log(v));
    const xMin = Math.min(...lx);
    const xMax = Math.max(...lx);
    const xs = (i: number) => x0 + (xMax === xMin ? PANEL_W / 2 : (((lx[i] ?? 0) - xMin) / (xMax - xMin)) * PANEL_W);
    const ysc = (v: number) => y0 + PANEL_H - ((Math.log2(v) - lo) / (hi - lo)) * PANEL_H;
    out.push(`<g>`, `<text x="${num(x0 + PANEL_W / 2)}" y="${y0 - 12}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`);
    out.push(`<rect x="${x0}" y="${y0}" width="${PANEL_W}" height="${PANEL_H}" fill="none" stroke="#999"/>`);
    out.push(`<text x="${num(x0 + PANEL_W / 2)}" y="${y0 + PANEL_H + 38}" text-anchor="middle">${esc(p.xLabel)}</text>`);
    const yMid = num(y0 + PANEL_H / 2);
    out.push(`<text x="${x0 - 50}" y="${yMid}" text-anchor="middle" transform="rotate(-90 ${x0 - 50} ${yMid})">${esc(c.yLabel)}</text>`);
    for (let e = lo; e <= hi; e++) {
      const y = num(ysc(2 ** e));
      out.push(`<line x1="${x0}" y1="${y}" x2="${x0 + PANEL_W}" y2="${y}" stroke="${e === 0 ? '#333' : '#e5e5e5'}"/>`);
      out.push(`<text x="${x0 - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${2 ** e >= 1 ? 2 ** e : `1/${2 ** -e}`}x</text>`);
    }
    p.x.forEach((v, i) => {
      const x = num(xs(i));
      out.push(`<line x1="${x}" y1="${y0}" x2="${x}" y2="${y0 + PANEL_H}" stroke="#f0f0f0"/>`);
      out.push(`<text x="${x}" y="${y0 + PANEL_H + 16}" text-anchor="middle">${tickLabel(v)}</text>`);
    });
    p.series.forEach((s, si) => {
      const color = COLORS[si % COLORS.length]!;
      let path = '';
      let pen = false;
      s.y.forEach((v, i) => {
        if (v === null || !(v > 0) || !Number.isFinite(v)) {
          pen = false;
          return;
        }
        path += `${pen ? 'L' : 'M'}${num(xs(i))} ${num(ysc(v))} `;
        pen = true;
        out.push(`<circle cx="${num(xs(i))}" cy="${num(ysc(v))}" r="3" fill="${color}"><title>${esc(s.label)}: ${v.toFixed(2)}x</title></circle>`);
      });
      if (path) out.push(`<path d="${path.trim()}" fill="none" stroke="${color}" stroke-width="2"/>`);
    });
    out.push(`</g>`);
  });
  const step = (width - 2 * MARGIN.left) / perRow;
  labels.forEach((l, i) => {
    const x = MARGIN.left + (i % perRow) * step;
    const y = MARGIN.top + PANEL_H + MARGIN.bottom + LEGEND_ROW * Math.floor(i / perRow) + LEGEND_ROW / 2;
    out.push(`<line x1="${num(x)}" y1="${y}" x2="${num(x + 24)}" y2="${y}" stroke="${COLORS[i % COLORS.length]}" stroke-width="3"/>`);
    out.push(`<text x="${num(x + 30)}" y="${y}" dominant-baseline="middle">${esc(l)}</text>`);
  });
  out.push('</svg>', '');
  return out.join('\n');
}
