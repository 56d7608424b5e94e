// The page's focus ring against what it is drawn on, in both colour schemes (WCAG 1.4.11:
// at least 3:1), and its 44 px tap targets, read from web/public/styles.css.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

const css = readFileSync(new URL('../public/styles.css', import.meta.url), 'utf8');

function vars(block) {
  return Object.fromEntries([...block.matchAll(/--([\w-]+):\s*(#[0-9a-fA-F]{6})\b/g)].map((m) => [m[1], m[2]]));
}
const light = vars(css.slice(0, css.indexOf('@media (prefers-color-scheme: dark)')));
const dark = { ...light, ...vars(css.slice(css.indexOf('@media (prefers-color-scheme: dark)')).split(/\n\}\n/)[0]) };

const channel = (c) => {
  const v = c / 255;
  return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
};
function luminance(hex) {
  const n = Number.parseInt(hex.slice(1), 16);
  return 0.2126 * channel(n >> 16) + 0.7152 * channel((n >> 8) & 255) + 0.0722 * channel(n & 255);
}
export function contrast(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

test('the contrast formula gives the known figures', () => {
  assert.equal(contrast('#000000', '#ffffff').toFixed(2), '21.00');
  assert.equal(contrast('#ffbf47', '#ffffff').toFixed(2), '1.64');
});

for (const [scheme, palette] of [['light', light], ['dark', dark]]) {
  test(`the focus ring stands out at least 3:1 from what it is drawn on (${scheme})`, () => {
    for (const background of ['card', 'bg', 'accent-soft']) {
      const ratio = contrast(palette.focus, palette[background]);
      assert.ok(ratio >= 3, `${scheme}: --focus ${palette.focus} on --${background} ${palette[background]} is ${ratio.toFixed(2)}:1`);
    }
  });
}

test('tap targets are at least 44 px', () => {
  assert.match(css, /--tap:\s*2\.75rem/);
  const buttons = /button, \.button-link, \.file-label \{[^}]*min-height: var\(--tap\)/;
  assert.match(css, buttons);
  assert.match(css, /\.link-button \{[^}]*min-height: var\(--tap\)/);
});
