// AudioWorklet: microphone at the context's rate -> 16 kHz -> 10 ms hops of Int16, posted to
// the page with the context time at which each hop was complete.
import { Resampler } from "./resampler.js";

class HopCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, hop } = options.processorOptions;
    this.resampler = new Resampler(sampleRate, targetRate);
    this.hop = hop;
    this.pending = new Float32Array(0);
  }

  process(inputs, outputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      const resampled = this.resampler.process(channel);
      const joined = new Float32Array(this.pending.length + resampled.length);
      joined.set(this.pending);
      joined.set(resampled, this.pending.length);
      let start = 0;
      for (; start + this.hop <= joined.length; start += this.hop) {
        const pcm = new Int16Array(this.hop);
        for (let i = 0; i < this.hop; i++) {
          const v = Math.max(-1, Math.min(1, joined[start + i]));
          pcm[i] = Math.round(v * 32767);
        }
        this.port.postMessage({ pcm: pcm.buffer, time: currentTime }, [pcm.buffer]);
      }
      this.pending = joined.slice(start);
    }
    outputs[0].forEach((out) => out.fill(0));
    return true;
  }
}

registerProcessor("hop-capture", HopCapture);
