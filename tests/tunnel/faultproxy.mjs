// SPDX-License-Identifier: MIT
// A TCP relay between the sandbox and the control plane (loopback only) that can cut every
// connection, stall the open ones (stop forwarding, the connections stay open), delay each
// chunk, or play a control plane that is down (accept each connection and close it at once).
// It records when every connection arrived (state.attempts: Date.now() values, one per dial)
// and counts the bytes it relays each way (state.bytesUp: sandbox -> control plane,
// state.bytesDown: back): TCP payload, i.e. TLS records with their headers. stallNextAt(k)
// stalls the next connection once k bytes went through it (both ways together; the chunk that
// crosses k is cut there): state.stalledAt is then when that happened; state.lastPairBytes
// is what the latest connection has relayed so far.
import net from 'node:net';

export async function startFaultProxy(targetPort) {
  const pairs = new Set();
  const state = { delayMs: 0, accepted: 0, down: false, attempts: [], bytesUp: 0, bytesDown: 0, lastPairBytes: 0 };
  let cutter = null;
  let stallAt = null;
  const server = net.createServer((down) => {
    state.accepted++;
    state.attempts.push(Date.now());
    if (state.down) {
      down.on('error', () => {});
      down.destroy();
      return;
    }
    const up = net.connect(targetPort, '127.0.0.1');
    const pair = { down, up, stalled: false, bytes: 0, stallAt };
    stallAt = null;
    state.lastPairBytes = 0;
    pairs.add(pair);
    const pipe = (from, to, counter) =>
      from.on('data', (chunk) => {
        if (pair.stalled) return; // dropped: a stalled path loses what it carries
        if (pair.stallAt !== null && pair.bytes + chunk.length >= pair.stallAt) {
          chunk = chunk.subarray(0, pair.stallAt - pair.bytes);
          pair.stalled = true;
          state.stalledAt = Date.now();
        }
        pair.bytes += chunk.length;
        state.lastPairBytes = pair.bytes;
        state[counter] += chunk.length;
        if (counter === 'bytesUp' && cutter && state.bytesUp >= cutter.next) {
          // cut in the middle of whatever the sandbox is sending
          cutter.next = state.bytesUp + cutter.every;
          if (cutter.left-- > 0) setImmediate(() => proxy.cut());
        }
        if (state.delayMs) setTimeout(() => to.destroyed || to.write(chunk), state.delayMs);
        else to.write(chunk);
      });
    pipe(down, up, 'bytesUp');
    pipe(up, down, 'bytesDown');
    const end = () => {
      down.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  const proxy = {
    port: server.address().port,
    state,
    cut() {
      for (const p of pairs) {
        p.down.resetAndDestroy?.() ?? p.down.destroy();
        p.up.destroy();
      }
      pairs.clear();
    },
    // Stall the connections open now (new ones are relayed as usual).
    stall() {
      for (const p of pairs) p.stalled = true;
    },
    stallNextAt(bytes) {
      stallAt = bytes;
    },
    delay(ms) {
      state.delayMs = ms;
    },
    // Cut all connections each time another `every` bytes went from the sandbox to the
    // control plane, `times` times.
    cutEvery(every, times) {
      cutter = every > 0 ? { every, next: state.bytesUp + every, left: times } : null;
    },
    cutsLeft() {
      return cutter ? Math.max(0, cutter.left) : 0;
    },
    // Down: every new connection is accepted and closed at once (open ones are not touched).
    setDown(on) {
      state.down = on;
    },
    close() {
      this.cut();
      return new Promise((res) => server.close(res));
    },
  };
  return proxy;
}
