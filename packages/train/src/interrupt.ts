// Ctrl-C / SIGTERM handling of the long-running training commands.

/**
 * Makes the first SIGINT (Ctrl-C) or SIGTERM abort `ctrl` after writing `message` to stderr, so a training loop
 * watching `ctrl.signal` finishes its step and writes a checkpoint; a second signal finds no listener and kills the
 * process at once. Returns the function that removes the listeners (call it in a `finally`). `interrupted()` tells
 * whether a signal (rather than anything else aborting `ctrl`, e.g. a time budget) stopped the loop.
 */
export function abortOnInterrupt(ctrl: AbortController, message: string): { remove: () => void; interrupted: () => boolean } {
  let interrupted = false;
  const onSignal = () => {
    if (ctrl.signal.aborted) return;
    interrupted = true;
    process.stderr.write(`${message}\n`);
    ctrl.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    remove: () => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    },
    interrupted: () => interrupted,
  };
}
