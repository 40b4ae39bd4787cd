// The talk page: microphone -> AudioWorklet (16 kHz, 10 ms Int16 hops) -> WS /v1/loopback ->
// decoded PCM -> playback AudioWorklet, with a live latency readout. `window.hopcodec` exposes
// start/stop and what was sent and received (tests read it).

const RATE = 16000;
const HOP = 160;
const KEEP_HOPS = 6000; // 60 s of sent and received audio kept for inspection
const CLOSE_REASONS = {
  1000: "closed", 1006: "connection lost", 1009: "message too big", 1011: "server error",
  1013: "server full, try again later", 4400: "bad parameters", 4401: "unauthorized (add ?token=…)",
  4408: "idle timeout", 4409: "reading too slowly", 4422: "too many malformed messages",
  4429: "sending too fast",
};

const params = new URLSearchParams(location.search);
const token = params.get("token");
const $ = (id) => document.getElementById(id);
const state = {
  running: false, info: null, ready: null, ws: null, ctx: null, media: null, nodes: [],
  sendTimes: [], rtts: [], sent: [], received: [], playback: {}, errors: [], timer: null,
  counters: { sent: 0, received: 0 },
};

function withToken(url) {
  if (!token) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
  if (error) state.errors.push(text);
}

async function loadInfo() {
  const response = await fetch(withToken("/v1/info"));
  if (!response.ok) throw new Error(`GET /v1/info: HTTP ${response.status}`);
  state.info = await response.json();
  const select = $("mode");
  const best = new Option("default (best installed)", "default");
  select.add(best);
  for (const mode of state.info.modes) {
    select.add(new Option(`${mode.name} (${(mode.bitrate_bps / 1000).toFixed(1)} kbit/s)`, mode.name));
  }
  $("synthesizer").textContent = state.info.synthesizer || "?";
  $("talk").disabled = false;
  setStatus("ready: press talk");
}

function openSocket(mode) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = withToken(`${scheme}//${location.host}/v1/loopback?mode=${encodeURIComponent(mode)}&rate=${RATE}`);
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  return new Promise((resolve, reject) => {
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "ready") resolve([ws, message]);
      else reject(new Error(message.detail || message.type));
    };
    ws.onclose = (event) => reject(new Error(`server closed the stream: ${event.code} ${CLOSE_REASONS[event.code] || ""} ${event.reason}`));
    ws.onerror = () => reject(new Error("cannot connect to " + url));
  });
}

function keep(list, item) {
  list.push(item);
  if (list.length > KEEP_HOPS) list.shift();
}

function onReply(event) {
  if (typeof event.data === "string") {
    const message = JSON.parse(event.data);
    if (message.type === "error") setStatus(`server error ${message.code}: ${message.detail}`, true);
    return;
  }
  const sentAt = state.sendTimes.shift();
  if (sentAt !== undefined) keep(state.rtts, performance.now() - sentAt);
  const pcm = new Int16Array(event.data);
  keep(state.received, pcm);
  state.counters.received += 1;
  const audio = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) audio[i] = pcm[i] / 32768;
  state.nodes.playback.port.postMessage(audio.buffer, [audio.buffer]);
}

function onHop(event) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(event.data.pcm);
  state.sendTimes.push(performance.now());
  keep(state.sent, new Int16Array(event.data.pcm));
  state.counters.sent += 1;
}

async function start() {
  const mode = $("mode").value;
  setStatus("starting…");
  state.sendTimes = [];
  const ctx = new AudioContext({ latencyHint: "interactive" });
  state.ctx = ctx;
  await ctx.audioWorklet.addModule("/static/capture-worklet.js");
  await ctx.audioWorklet.addModule("/static/playback-worklet.js");
  state.media = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const [ws, ready] = await openSocket(mode);
  state.ws = ws;
  state.ready = ready;
  ws.onmessage = onReply;
  ws.onclose = (event) => {
    if (state.running) setStatus(`server closed the stream: ${event.code} ${CLOSE_REASONS[event.code] || ""} ${event.reason}`, event.code !== 1000);
    stop();
  };
  const source = ctx.createMediaStreamSource(state.media);
  const capture = new AudioWorkletNode(ctx, "hop-capture", {
    numberOfOutputs: 1, processorOptions: { targetRate: RATE, hop: HOP },
  });
  const mute = ctx.createGain();
  mute.gain.value = 0;
  source.connect(capture).connect(mute).connect(ctx.destination);
  const playback = new AudioWorkletNode(ctx, "hop-playback", {
    numberOfInputs: 0, outputChannelCount: [1],
    processorOptions: { sourceRate: RATE, startMs: 20, maxMs: 120 },
  });
  playback.connect(ctx.destination);
  playback.port.onmessage = (event) => { state.playback = event.data; };
  capture.port.onmessage = onHop;
  state.nodes = { source, capture, mute, playback };
  await ctx.resume();
  state.running = true;
  $("talk").textContent = "stop";
  $("talk").classList.add("on");
  setStatus(`talking: mode ${ready.mode}, context at ${ctx.sampleRate} Hz`);
  state.timer = setInterval(render, 250);
}

function stop() {
  state.running = false;
  clearInterval(state.timer);
  if (state.ws && state.ws.readyState <= WebSocket.OPEN) state.ws.close(1000, "done");
  if (state.media) state.media.getTracks().forEach((track) => track.stop());
  if (state.ctx && state.ctx.state !== "closed") state.ctx.close();
  state.ws = null;
  state.media = null;
  $("talk").textContent = "talk";
  $("talk").classList.remove("on");
  if (!state.errors.length) setStatus("stopped");
  render();
}

function median(values) {
  if (!values.length) return null;
  const sorted = [...values.slice(-200)].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function latency() {
  const ready = state.ready;
  const ctx = state.ctx;
  const rtt = median(state.rtts);
  const queue = state.playback.queuedMs ?? null;
  const output = ctx ? 1000 * ((ctx.baseLatency || 0) + (ctx.outputLatency || 0)) : null;
  const algorithmic = ready ? ready.algorithmic_latency_ms : null;
  const parts = [algorithmic, rtt, queue, output];
  const total = parts.every((v) => v !== null) ? parts.reduce((a, b) => a + b, 0) : null;
  return { algorithmic, rtt, queue, output, total };
}

function ms(value) {
  return value === null || value === undefined ? "–" : `${value.toFixed(1)} ms`;
}

function render() {
  const figures = latency();
  $("r-algorithmic").textContent = ms(figures.algorithmic);
  $("r-rtt").textContent = ms(figures.rtt);
  $("r-queue").textContent = ms(figures.queue);
  $("r-output").textContent = ms(figures.output);
  $("r-total").textContent = ms(figures.total);
  $("r-hops").textContent = `${state.counters.sent} / ${state.counters.received}`;
  const mode = state.info && state.ready && state.info.modes.find((m) => m.name === state.ready.mode);
  $("r-bitrate").textContent = mode ? `${(mode.bitrate_bps / 1000).toFixed(1)} kbit/s` : "–";
  const p = state.playback;
  $("r-underruns").textContent = p.played === undefined ? "–" : `${p.underruns} / ${p.trimmed}`;
}

function base64(chunks) {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const joined = new Int16Array(total);
  let offset = 0;
  for (const chunk of chunks) { joined.set(chunk, offset); offset += chunk.length; }
  const bytes = new Uint8Array(joined.buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function dump() {
  return {
    sent: base64(state.sent), received: base64(state.received), rtts: state.rtts,
    playback: state.playback, ready: state.ready, errors: state.errors, latency: latency(),
    counters: state.counters, sampleRate: state.ctx ? state.ctx.sampleRate : null,
    readout: $("readout").innerText,
  };
}

$("talk").addEventListener("click", () => {
  if (state.running) stop();
  else start().catch((error) => { setStatus(`cannot start: ${error.message}`, true); stop(); });
});
window.hopcodec = { state, start, stop, dump };
loadInfo().catch((error) => setStatus(`cannot load /v1/info: ${error.message}`, true));
