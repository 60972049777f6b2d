// A TCP relay between the sandbox and the control plane (loopback only) that can cut every
// connection, stall them (stop forwarding, connections stay open) or delay each chunk.
import net from 'node:net';

export async function startFaultProxy(targetPort) {
  const pairs = new Set();
  const state = { stalled: false, delayMs: 0, accepted: 0 };
  const server = net.createServer((down) => {
    state.accepted++;
    const up = net.connect(targetPort, '127.0.0.1');
    const pair = { down, up };
    pairs.add(pair);
    const pipe = (from, to) =>
      from.on('data', (chunk) => {
        if (state.stalled) return; // dropped: a stalled path loses what it carries
        if (state.delayMs) setTimeout(() => to.destroyed || to.write(chunk), state.delayMs);
        else to.write(chunk);
      });
    pipe(down, up);
    pipe(up, down);
    const end = () => {
      down.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  return {
    port: server.address().port,
    state,
    cut() {
      for (const p of pairs) {
        p.down.resetAndDestroy?.() ?? p.down.destroy();
        p.up.destroy();
      }
      pairs.clear();
    },
    stall(on) {
      state.stalled = on;
    },
    delay(ms) {
      state.delayMs = ms;
    },
    close() {
      this.cut();
      return new Promise((res) => server.close(res));
    },
  };
}
