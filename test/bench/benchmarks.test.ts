// The shape of what the benches publish, checked against the committed files:
// BENCHMARKS.md and docs/performance.md read on one screen's width, the summary
// fits one screen, and docs/scaling.svg says what its axes are. A bench that
// breaks the shape fails here; report.ts's fitting is tested on its own.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { MAX_LINE, fitMarkdown, table } from '../../bench/report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const read = (path: string) => readFileSync(`${ROOT}/${path}`, 'utf8');
const longLines = (text: string) => text.split('\n').filter((l) => l.length > MAX_LINE);
const words = (text: string) => text.split(/\s+/).filter((w) => w !== '' && !/^-+$/.test(w));

describe('the committed benchmark documents', () => {
  test.each(['BENCHMARKS.md', 'docs/performance.md'])('%s has no line of 120 characters or more', (path) => {
    expect(MAX_LINE).toBe(119);
    expect(longLines(read(path))).toEqual([]);
  });

  test('the summary, with the machine, the command and the headline table, fits one screen', () => {
    const lines = read('BENCHMARKS.md').split('\n');
    const summary = lines.indexOf('## Summary');
    const firstBench = lines.findIndex((l, i) => i > summary && l.startsWith('## '));
    expect(summary).toBeGreaterThan(0);
    expect(firstBench).toBeGreaterThan(summary);
    expect(firstBench).toBeLessThanOrEqual(45);
    const top = lines.slice(0, firstBench).join('\n');
    expect(top).toContain('`sudo make bench`');
    expect(top).toMatch(/Linux \S+, .+, \d+ CPUs; Node v/);
    expect(top).toMatch(/\nbench +figure +n +value +target +result +same run: ratio to\n/);
    expect(top).toContain('[docs/performance.md](docs/performance.md)');
  });

  test('the history of what was tried lives in docs/performance.md, not in what make bench rewrites', () => {
    const accounts = /kept from the previous text|What was tried|Where the nanoseconds go|What made the policy faster|Where the time goes/;
    expect(read('BENCHMARKS.md')).not.toMatch(accounts);
    for (const heading of ['## Datapath: the XDP program', '## Policy pipeline', '## Replay']) {
      expect(read('docs/performance.md')).toContain(`\n${heading}\n`);
    }
  });

  test('docs/scaling.svg: a title; per panel a title, axis titles with units and tick labels; a legend', () => {
    // vega draws the chart's title after the panels: the title is the one text in the largest font.
    const drawn = [...read('docs/scaling.svg').matchAll(/<text([^>]*)>([^<]*)<\/text>/g)].map((m) => ({
      size: Number(/font-size="([\d.]+)px"/.exec(m[1]!)?.[1] ?? 0),
      text: m[2]!,
    }));
    const largest = Math.max(...drawn.map((t) => t.size));
    expect(drawn.filter((t) => t.size === largest).map((t) => t.text)).toEqual([
      'Packetwatch policy as N, the tracked sources and the probes grow (make bench-scaling)',
    ]);
    const texts = drawn.map((t) => t.text);
    const rows = [
      ['CPU', 'CPU s per million events'],
      ['Memory', 'policy RSS, bytes per source'],
      ['Detections', 'detections per second'],
    ] as const;
    const axes = ['threshold N (ports)', 'tracked sources', 'probes reporting to one policy'];
    for (const [what, yTitle] of rows) {
      expect(texts.filter((t) => t === yTitle)).toHaveLength(axes.length);
      for (const axis of axes) expect(texts).toContain(`${what} along ${axis}`);
    }
    for (const axis of axes) expect(texts.filter((t) => t === `${axis}, log scale`)).toHaveLength(rows.length);
    for (const tick of ['0', '3', '100', '1k', '1M', '8']) expect(texts).toContain(tick);
    expect(texts).toContain('policy CPU s per M events');
    expect(texts).toContain('probe CPU s per M events (all probes)');
    expect(texts).toContain('detections/s');
    expect(texts.some((t) => t.startsWith('policy bytes per tracked source'))).toBe(true);
  });
});

describe('report.ts fits what the benches write', () => {
  const header = ['path', 'frame', 'ns/packet', 'ratio to the empty program'];
  const rows = [
    ['new-connection', 'SYN from a source never seen before, which the detector admits to probation -> event', '64.4', '10.7'],
    ['drop', 'SYN from a blocked source, found in the drop cache', '13.2', '2.2'],
  ];

  test('a table that fits prints as it always did: one line a row', () => {
    expect(table(['a', 'bb'], [['x', '1'], ['yyy', '22']], [false, true])).toBe('a    bb\n---  --\nx     1\nyyy  22');
  });

  test('a table too wide wraps its headers, then its text cells between words, never a number', () => {
    const t = table(header, rows, [false, false, true, true]);
    expect(longLines(t)).toEqual([]);
    const lines = t.split('\n');
    expect(lines.length).toBeGreaterThan(2 + rows.length);
    expect(words(t).sort()).toEqual(words([...header, ...rows.flat()].join(' ')).sort());
    expect(lines.find((l) => l.startsWith('new-connection'))).toMatch(/ 64\.4 +10\.7$/);
  });

  test('fitMarkdown wraps prose and list items, and leaves headings, code blocks and short lines alone', () => {
    const prose = `The detector ${'keeps every port it saw within the window '.repeat(5)}and no more.`;
    const code = ['```text', `${'x'.repeat(MAX_LINE)} ${'y'.repeat(10)}`, '```'];
    const md = ['## A heading that stays', '', prose, '', `- Method: ${prose}`, '', ...code, 'short'].join('\n');
    const fitted = fitMarkdown(md);
    expect(longLines(md)).not.toEqual([]);
    expect(longLines(fitted)).toEqual([code[1]]);
    expect(words(fitted).sort()).toEqual(words(md).sort());
    const lines = fitted.split('\n');
    expect(lines[0]).toBe('## A heading that stays');
    expect(lines.at(-1)).toBe('short');
    expect(lines.slice(-4, -1)).toEqual(code);
    const item = lines.findIndex((l) => l.startsWith('- Method: '));
    expect(lines[item + 1]).toMatch(/^ {2}\S/);
    expect(fitMarkdown(fitted)).toBe(fitted);
  });
});
