// SPDX-License-Identifier: MIT
// TAP output for the tunnel tests: ok(good, description, ...diagnostics on failure), diag(text),
// and plan() to end with (prints the plan; returns the exit status).
let n = 0;
let failed = 0;
export const ok = (good, desc, ...diag) => {
  n++;
  console.log(`${good ? '' : 'not '}ok ${n} - ${desc}`);
  if (!good) {
    failed++;
    for (const d of diag) console.log(String(typeof d === 'string' ? d : JSON.stringify(d)).replace(/^/gm, '# '));
  }
  return good;
};
export const diag = (s) => console.log(String(s).replace(/^/gm, '# '));
export const plan = () => {
  console.log(`1..${n}`);
  return failed ? 1 : 0;
};
