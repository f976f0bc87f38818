// Line charts as SVG: a grid of panels, each titled, with a logarithmic x axis (the benches grow their axes
// geometrically) and a linear y axis from 0, both titled with their units and ticked; one legend below, a series
// keeping its colour in every panel. A few panels of a few lines need no charting library, and text diffs well.

/** A panel: its title, its axes' titles (with their units), and a line per series: its legend label and a y per x (null: none there, the line breaks). */
export type Panel = { title: string; xLabel: string; yLabel: string; x: readonly number[]; series: readonly { label: string; y: readonly (number | null)[] }[] };

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#7f7f7f'];
/** A panel's plot area, and its margins (the axes' ticks and titles). */
const [W, H, M] = [300, 170, { left: 80, right: 30, top: 36, bottom: 54 }];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const num = (x: number) => (Math.round(x * 10) / 10).toString();
const finite = (v: number | null): v is number => v !== null && Number.isFinite(v);
const short = (v: number) => (v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : String(v));

/** 0 to a round maximum at or above max, in 4 or 5 steps of 1, 2 or 5 times a power of ten. */
function yTicks(max: number): number[] {
  const p = 10 ** Math.floor(Math.log10(max > 0 ? max / 4 : 1));
  const step = [1, 2, 5, 10].map((k) => k * p).find((s) => max <= 5 * s) ?? 10 * p;
  return Array.from({ length: Math.max(1, Math.ceil(max / step)) + 1 }, (_, i) => Math.round(i * step * 1e6) / 1e6);
}

export function lineChartsSvg(title: string, columns: number, panels: readonly Panel[]): string {
  const labels = [...new Set(panels.flatMap((p) => p.series.map((s) => s.label)))];
  const color = (label: string) => COLORS[labels.indexOf(label) % COLORS.length]!;
  const bottom = 40 + Math.ceil(panels.length / columns) * (M.top + H + M.bottom);
  const width = columns * (M.left + W + M.right) + 20;
  const height = bottom + 24 * labels.length + 10;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
  panels.forEach((p, i) => {
    const x0 = (i % columns) * (M.left + W + M.right) + M.left;
    const y0 = 40 + Math.floor(i / columns) * (M.top + H + M.bottom) + M.top;
    const lx = p.x.map((v) => Math.log(v));
    const [lo, hi] = [Math.min(...lx), Math.max(...lx)];
    const xs = (k: number) => num(x0 + (hi === lo ? W / 2 : ((lx[k]! - lo) / (hi - lo)) * W));
    const ticks = yTicks(Math.max(0, ...p.series.flatMap((s) => s.y.filter(finite))));
    const ys = (v: number) => num(y0 + H - (v / ticks.at(-1)!) * H);
    const yMid = num(y0 + H / 2);
    out.push(
      `<text x="${x0 + W / 2}" y="${y0 - 10}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`,
      `<rect x="${x0}" y="${y0}" width="${W}" height="${H}" fill="none" stroke="#999"/>`,
      `<text x="${x0 + W / 2}" y="${y0 + H + 38}" text-anchor="middle">${esc(p.xLabel)}</text>`,
      `<text x="${x0 - 56}" y="${yMid}" text-anchor="middle" transform="rotate(-90 ${x0 - 56} ${yMid})">${esc(p.yLabel)}</text>`,
    );
    for (const t of ticks) {
      out.push(`<line x1="${x0}" y1="${ys(t)}" x2="${x0 + W}" y2="${ys(t)}" stroke="${t === 0 ? '#333' : '#e5e5e5'}"/>`);
      out.push(`<text x="${x0 - 6}" y="${ys(t)}" text-anchor="end" dominant-baseline="middle">${short(t)}</text>`);
    }
    p.x.forEach((v, k) => out.push(`<text x="${xs(k)}" y="${y0 + H + 16}" text-anchor="middle">${short(v)}</text>`));
    for (const s of p.series) {
      const runs: string[][] = [[]];
      s.y.forEach((v, k) => {
        if (!finite(v)) return void runs.push([]);
        runs.at(-1)!.push(`${xs(k)} ${ys(v)}`);
        out.push(`<circle cx="${xs(k)}" cy="${ys(v)}" r="3" fill="${color(s.label)}"><title>${esc(s.label)}: ${v}</title></circle>`);
      });
      const d = runs.filter((r) => r.length > 0).map((r) => `M${r.join(' L')}`).join(' ');
      if (d) out.push(`<path d="${d}" fill="none" stroke="${color(s.label)}" stroke-width="2"/>`);
    }
  });
  labels.forEach((l, i) => {
    const y = bottom + 24 * i + 8;
    out.push(`<line x1="${M.left}" y1="${y}" x2="${M.left + 24}" y2="${y}" stroke="${color(l)}" stroke-width="3"/>`);
    out.push(`<text x="${M.left + 30}" y="${y}" dominant-baseline="middle">${esc(l)}</text>`);
  });
  out.push('</svg>', '');
  return out.join('\n');
}
