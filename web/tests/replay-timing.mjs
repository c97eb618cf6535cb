// Timing probes for the replay page, shared by the browser test (replay.mjs, which reports what
// it sees) and the benchmark (replay-bench.mjs). Both functions run inside the page (Playwright
// serialises them), so they use nothing from this module's scope.

/// An init script: records, per camera, when its <video> first has a decoded frame
/// (`loadeddata`) and when one is first presented (requestVideoFrameCallback), in
/// performance.now() milliseconds from navigation start, in `window.__replayTiming`.
export function firstFrameProbe() {
  const timing = (window.__replayTiming = { origin: performance.timeOrigin, loaded: {}, presented: {} });
  const name = (v) => v.closest('figure')?.dataset.source ?? '?';
  document.addEventListener(
    'loadeddata',
    (e) => {
      if (e.target instanceof HTMLVideoElement) timing.loaded[name(e.target)] ??= performance.now();
    },
    true,
  );
  document.addEventListener(
    'loadstart',
    (e) => {
      const v = e.target;
      if (v instanceof HTMLVideoElement && v.requestVideoFrameCallback) {
        v.requestVideoFrameCallback(() => {
          timing.presented[name(v)] ??= performance.now();
        });
      }
    },
    true,
  );
}

/// Seeks the page to wall-clock `at` (ms) the way a typed time or a click on the timeline does,
/// and resolves with the milliseconds until every camera has finished seeking and has a decoded
/// frame (readyState ≥ 2) at the new position: `all` (null on timeout), `per_camera`,
/// `presented` (requestVideoFrameCallback, when every camera reported one) and `off_s`, the
/// largest distance between where a camera landed and `at`, in seconds.
export function seekAndTime({ at, timeoutMs }) {
  return new Promise((resolve) => {
    const videos = [...document.querySelectorAll('figure.tile.video')].map((f) => ({
      name: f.dataset.source,
      v: f.querySelector('video'),
    }));
    const done = {};
    const presented = {};
    const t0 = performance.now();
    for (const { name, v } of videos) {
      v.requestVideoFrameCallback?.(() => {
        presented[name] ??= performance.now() - t0;
      });
    }
    window.witnessReplay.seek(at);
    const finish = (timedOut) => {
      const landed = window.witnessReplay
        .state()
        .sources.filter((s) => s.video)
        .map((s) => (s.wall == null ? Infinity : Math.abs(s.wall - at) / 1000));
      const p = Object.values(presented);
      resolve({
        started: performance.timeOrigin + t0,
        all: timedOut ? null : Math.max(...Object.values(done)),
        per_camera: done,
        presented: p.length === videos.length ? Math.max(...p) : null,
        off_s: Math.max(...landed),
      });
    };
    const poll = () => {
      const now = performance.now() - t0;
      for (const { name, v } of videos) {
        if (done[name] == null && !v.seeking && v.readyState >= 2) done[name] = now;
      }
      if (Object.keys(done).length === videos.length) finish(false);
      else if (now > timeoutMs) finish(true);
      else setTimeout(poll, 4);
    };
    poll();
  });
}
