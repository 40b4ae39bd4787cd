// Streaming windowed-sinc resampler for any pair of rates (used by both AudioWorklets).
// Each output sample is a Hann-windowed sinc interpolation of the input around its position;
// the cutoff sits below the lower of the two Nyquist frequencies, so downsampling does not alias.

export class Resampler {
  constructor(inRate, outRate, zeroCrossings = 16) {
    this.step = inRate / outRate;             // input samples per output sample
    this.cutoff = 0.92 * Math.min(1, outRate / inRate);
    this.half = Math.ceil(zeroCrossings / this.cutoff); // taps each side, in input samples
    this.buffer = new Float32Array(0);
    this.position = 0;                         // input index of the next output sample
  }

  /** Resample one chunk; returns the output samples that are complete so far. */
  process(input) {
    const joined = new Float32Array(this.buffer.length + input.length);
    joined.set(this.buffer);
    joined.set(input, this.buffer.length);
    const out = [];
    while (this.position + this.half < joined.length) {
      const centre = this.position;
      const first = Math.max(0, Math.floor(centre) - this.half + 1);
      const last = Math.floor(centre) + this.half;
      let sum = 0;
      for (let k = first; k <= last; k++) {
        sum += joined[k] * this.kernel(centre - k);
      }
      out.push(sum);
      this.position += this.step;
    }
    const drop = Math.max(0, Math.floor(this.position) - this.half);
    this.buffer = joined.slice(drop);
    this.position -= drop;
    return Float32Array.from(out);
  }

  kernel(distance) {
    const x = this.cutoff * distance;
    const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
    const window = 0.5 + 0.5 * Math.cos((Math.PI * distance) / this.half);
    return this.cutoff * sinc * window;
  }
}
