// AudioWorklet of the night monitor page: hands the microphone's samples to the page in chunks.
"use strict";

const CHUNK = 2048;  // samples per message (about 40 ms at 48 kHz)

class Tap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunk = new Float32Array(CHUNK);
    this.filled = 0;
  }

  process(inputs) {
    const samples = inputs[0] && inputs[0][0];
    for (let i = 0; samples && i < samples.length;) {
      const n = Math.min(samples.length - i, CHUNK - this.filled);
      this.chunk.set(samples.subarray(i, i + n), this.filled);
      this.filled += n;
      i += n;
      if (this.filled === CHUNK) {
        this.port.postMessage(this.chunk, [this.chunk.buffer]);
        this.chunk = new Float32Array(CHUNK);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("respira-tap", Tap);
