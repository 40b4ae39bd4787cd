// AudioWorklet: decoded 16 kHz audio from the page -> the context's rate -> the speakers,
// through a small queue: playback starts when `startMs` are queued, a queue longer than
// `maxMs` is trimmed (latency stays bounded), an empty queue plays silence (counted).
import { Resampler } from "./resampler.js";

class HopPlayback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { sourceRate, startMs, maxMs } = options.processorOptions;
    this.resampler = new Resampler(sourceRate, sampleRate);
    this.start = Math.round((startMs * sampleRate) / 1000);
    this.max = Math.round((maxMs * sampleRate) / 1000);
    this.queue = [];
    this.queued = 0;
    this.playing = false;
    this.counters = { played: 0, underruns: 0, trimmed: 0 };
    this.lastReport = 0;
    this.port.onmessage = (event) => this.enqueue(new Float32Array(event.data));
  }

  enqueue(audio) {
    const resampled = this.resampler.process(audio);
    this.queue.push(resampled);
    this.queued += resampled.length;
    while (this.queued > this.max && this.queue.length > 1) {
      this.queued -= this.queue[0].length;
      this.counters.trimmed += this.queue.shift().length;
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    out.fill(0);
    if (!this.playing && this.queued >= this.start) this.playing = true;
    let written = 0;
    while (this.playing && written < out.length && this.queue.length) {
      const head = this.queue[0];
      const take = Math.min(head.length, out.length - written);
      out.set(head.subarray(0, take), written);
      written += take;
      this.queued -= take;
      if (take === head.length) this.queue.shift();
      else this.queue[0] = head.subarray(take);
    }
    this.counters.played += written;
    if (this.playing && written < out.length) {
      this.counters.underruns += 1;
      this.playing = false; // build up `start` again before playing on
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (currentTime - this.lastReport > 0.1) {
      this.lastReport = currentTime;
      this.port.postMessage({ queuedMs: (1000 * this.queued) / sampleRate, ...this.counters });
    }
    return true;
  }
}

registerProcessor("hop-playback", HopPlayback);
