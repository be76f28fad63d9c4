// The Chromium endpoint's page: one RTCPeerConnection driven by testbed over the DevTools protocol.
//
// The Python endpoint process (testbed/calls/chromium/endpoint.py) calls the functions of
// `window.tb` with Runtime.evaluate and hears state changes through the `tbEmit` binding
// (Runtime.addBinding).  Nothing here talks to the network except the peer connection itself:
// signalling goes through the Python process to the run's relay.
"use strict";

(() => {
  const WANTED = new Set([
    "inbound-rtp", "outbound-rtp", "remote-inbound-rtp", "remote-outbound-rtp",
    "candidate-pair", "local-candidate", "remote-candidate", "transport", "codec", "media-source",
  ]);
  const MAX_DELAYS = 20000;
  let cfg = null;
  let pc = null;
  let stream = null;
  let offsetMs = 0;  // CLOCK_MONOTONIC ms - performance.now(), set by Python
  let stopped = false;
  let sender = null;  // data-channel timer
  const hooked = new Set();
  const data = {messages_sent: 0, bytes_sent: 0, messages_received: 0, bytes_received: 0, delays_ms: []};

  const mono = () => performance.now() + offsetMs;

  function emit(layer, state) {
    // t: CLOCK_MONOTONIC seconds (performance.now() is CLOCK_MONOTONIC-based on Linux; the
    // offset Python measured makes it absolute).
    try { window.tbEmit(JSON.stringify({layer, state, t: mono() / 1000})); } catch (e) { /* no binding */ }
  }

  function hookDtls(transport) {
    if (!transport || hooked.has(transport)) return;
    hooked.add(transport);
    transport.addEventListener("statechange", () => emit("dtls", transport.state));
    if (transport.state !== "new") emit("dtls", transport.state);
  }

  function hookTransports() {
    for (const t of pc.getTransceivers()) {
      if (t.sender && t.sender.transport) hookDtls(t.sender.transport);
    }
    if (pc.sctp) hookDtls(pc.sctp.transport);
  }

  function opened(channel) {
    if (channel.tbOpen) return;  // the callee's channel may be open before its "open" event
    channel.tbOpen = true;
    emit("data-channel", "open");
    startData(channel);
  }

  function wireChannel(channel) {
    channel.addEventListener("open", () => opened(channel));
    channel.addEventListener("close", () => emit("data-channel", "closed"));
    channel.addEventListener("message", (ev) => {
      const now = mono();
      const text = typeof ev.data === "string" ? ev.data : new TextDecoder().decode(ev.data);
      data.messages_received += 1;
      data.bytes_received += text.length;
      // "<seq> <CLOCK_MONOTONIC send time, s> xxxx": every endpoint (aiortc too) shares the clock.
      const sentAt = parseFloat(text.split(" ", 2)[1]);
      if (Number.isFinite(sentAt) && data.delays_ms.length < MAX_DELAYS) {
        data.delays_ms.push(Math.round((now - sentAt * 1000) * 1000) / 1000);
      }
    });
    if (channel.readyState === "open") opened(channel);
  }

  function startData(channel) {
    if (sender !== null) return;
    const size = cfg.data_message_bytes;
    const interval = cfg.data_interval_s * 1000;
    const start = performance.now();
    let seq = 0;
    const tick = () => {
      if (stopped || channel.readyState !== "open") { sender = null; return; }
      const head = `${seq} ${(mono() / 1000).toFixed(6)} `;
      const payload = head + "x".repeat(Math.max(0, size - head.length));
      try { channel.send(payload); } catch (e) { sender = null; return; }
      data.messages_sent += 1;
      data.bytes_sent += payload.length;
      seq += 1;
      sender = setTimeout(tick, Math.max(0, start + seq * interval - performance.now()));
    };
    sender = setTimeout(tick, 0);
  }

  async function media() {
    if (stream !== null) return stream;
    const constraints = {audio: cfg.audio, video: false};
    if (cfg.video) {
      constraints.video = {width: {exact: cfg.video_width}, height: {exact: cfg.video_height},
                           frameRate: {ideal: cfg.video_fps, max: cfg.video_fps}};
    }
    stream = await navigator.mediaDevices.getUserMedia(constraints);
    return stream;
  }

  function preferCodec(transceiver, kind) {
    // Offer exactly the scenario's codec (plus rtx/red/fec helpers of the same kind), as the
    // aiortc endpoint does, so the negotiated clock rate is known.
    const mime = (kind === "audio" ? cfg.audio_mime : cfg.video_mime).toLowerCase();
    const caps = RTCRtpReceiver.getCapabilities(kind);
    if (!caps || !transceiver.setCodecPreferences) return;
    const chosen = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mime);
    if (chosen.length === 0) throw new Error(`this Chromium cannot send ${mime}`);
    const helpers = caps.codecs.filter((c) => /\/(rtx|red|ulpfec|flexfec-03)$/i.test(c.mimeType));
    transceiver.setCodecPreferences([...chosen, ...helpers]);
  }

  async function gathered() {
    if (pc.iceGatheringState === "complete") return;
    await new Promise((resolve) => {
      const check = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  window.tb = {
    // Python measures offset = CLOCK_MONOTONIC - performance.now() around this call.
    now() { return performance.now(); },

    setup(config, offset) {
      cfg = config;
      offsetMs = offset;
      pc = new RTCPeerConnection({
        iceServers: cfg.ice_servers,
        iceTransportPolicy: cfg.ice_transport_policy,
        bundlePolicy: "max-bundle",
        rtcpMuxPolicy: "require",
      });
      pc.addEventListener("connectionstatechange", () => emit("connection", pc.connectionState));
      pc.addEventListener("iceconnectionstatechange", () => emit("ice-connection", pc.iceConnectionState));
      pc.addEventListener("icegatheringstatechange", () => emit("ice-gathering", pc.iceGatheringState));
      pc.addEventListener("datachannel", (ev) => wireChannel(ev.channel));
      pc.addEventListener("track", (ev) => {
        // A media element consumes the track, as an app's would (decoding, freeze stats).
        const el = document.createElement(ev.track.kind === "video" ? "video" : "audio");
        el.muted = true;
        el.autoplay = true;
        el.srcObject = new MediaStream([ev.track]);
        document.body.appendChild(el);
        el.play().catch(() => {});
      });
      return true;
    },

    async offer() {
      const s = await media();
      for (const track of s.getTracks()) {
        const t = pc.addTransceiver(track, {direction: "sendrecv"});
        preferCodec(t, track.kind);
      }
      if (cfg.data_channel) {
        const opts = cfg.data_reliable ? {ordered: true} : {ordered: false, maxRetransmits: 0};
        wireChannel(pc.createDataChannel("testbed", opts));
      }
      await pc.setLocalDescription();
      hookTransports();
      // No trickle: the relay carries one offer and one answer with every candidate in them.
      await gathered();
      return pc.localDescription.sdp;
    },

    async answer(sdp) {
      await pc.setRemoteDescription({type: "offer", sdp});
      const s = await media();
      for (const track of s.getTracks()) {
        const t = pc.getTransceivers().find((x) => x.receiver.track.kind === track.kind && !x.sender.track);
        if (t) {
          await t.sender.replaceTrack(track);
          t.direction = "sendrecv";
        } else {
          pc.addTrack(track, s);
        }
      }
      await pc.setLocalDescription();
      hookTransports();
      await gathered();
      return pc.localDescription.sdp;
    },

    async accept(sdp) {
      await pc.setRemoteDescription({type: "answer", sdp});
      hookTransports();
      return true;
    },

    async poll() {
      const out = [];
      if (pc !== null) {
        const report = await pc.getStats();
        report.forEach((s) => { if (WANTED.has(s.type)) out.push(s); });
      }
      const {delays_ms, ...counts} = data;
      return JSON.stringify({now: performance.now(), epoch: performance.timeOrigin + performance.now(),
                             stats: out, data: counts});
    },

    delays() { return JSON.stringify(data.delays_ms); },

    stop() {
      stopped = true;
      if (sender !== null) clearTimeout(sender);
      if (stream !== null) for (const t of stream.getTracks()) t.stop();
      return true;
    },

    close() {
      if (pc !== null) pc.close();
      return true;
    },
  };
  emit("endpoint", "page-ready");
})();
