// Calls: lifecycle frames and WebRTC with the SFU. All call signaling lives in this module.
//
// Each call member has two RTCPeerConnections to the SFU:
//  - publish:   the client adds its mic/camera, makes the offer, the server answers;
//  - subscribe: the server offers the peer's tracks (and re-offers when they change), the client answers.
// Frames both ways (over the chat WebSocket):
//   {"type":"sfu.signal","call_id","pc":"publish"|"subscribe","sdp":{"type":"offer"|"answer","sdp"}}
//   {"type":"sfu.signal","call_id","pc":"publish"|"subscribe","candidate":{candidate,sdpMid,sdpMLineIndex,usernameFragment}|null}
//   {"type":"sfu.signal","call_id","pc":"subscribe","restart":true}   (client asks for a fresh subscribe offer)
//   {"type":"sfu.signal","call_id","pc":"subscribe","max_layer":0|1|2} (the size we show the peer's video at)
//   {"type":"sfu.signal","call_id","pc":"publish","layers_needed":{"track","layers"}} (server: pause the rest)
// On ICE failure or a WebSocket reconnect the client restarts ICE on publish (offer with iceRestart)
// and asks for a new subscribe offer. When the SFU gives up on this member's media it sends
//   {"type":"sfu.signal","call_id","reset":true}
// and the client starts over with new peer connections (resetMedia), whose first publish offer
// carries "reset":true.
import { realtime } from './ws.js';
import { api } from './api.js';
import { toast } from './dom.js';

const STATS_INTERVAL_MS = 2000;
const DISCONNECT_GRACE_MS = 3000; // "disconnected" often heals by itself; restart ICE only if it does not

// Simulcast lets the SFU pick a layer per receiver. If the SFU's answer has no a=simulcast the
// browser falls back to one layer, so offering it is always safe.
const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', maxBitrate: 1_500_000 },
];

// Simulcast layers as the SFU numbers them in layers_needed and max_layer.
const RID_LAYER = { q: 0, h: 1, f: 2 };

class Ringer {
  // Tones are synthesised with WebAudio: no audio file to fetch, and the CSP allows it.
  constructor() { this.ctx = null; this.timer = null; }
  start(kind) {
    this.stop();
    try {
      this.ctx = this.ctx || new AudioContext();
      this.ctx.resume().catch(() => {});
    } catch { return; }
    // incoming: two quick rising chirps every 2 s; outgoing ringback: 440+480 Hz, 1.5 s on / 3 s off
    const pattern = kind === 'incoming'
      ? { period: 2000, notes: [[0, 0.18, [659, 880]], [0.25, 0.18, [784, 1047]]] }
      : { period: 4500, notes: [[0, 1.5, [440, 480]]] };
    const play = () => {
      const ctx = this.ctx;
      if (!ctx) return;
      const t0 = ctx.currentTime + 0.02;
      for (const [at, len, freqs] of pattern.notes) {
        const gain = ctx.createGain();
        gain.gain.setValueAtTime(0, t0 + at);
        gain.gain.linearRampToValueAtTime(kind === 'incoming' ? 0.18 : 0.08, t0 + at + 0.02);
        gain.gain.setValueAtTime(kind === 'incoming' ? 0.18 : 0.08, t0 + at + len - 0.03);
        gain.gain.linearRampToValueAtTime(0, t0 + at + len);
        gain.connect(ctx.destination);
        for (const f of freqs) {
          const osc = ctx.createOscillator();
          osc.type = 'sine';
          osc.frequency.value = f;
          osc.connect(gain);
          osc.start(t0 + at);
          osc.stop(t0 + at + len + 0.01);
        }
      }
    };
    play();
    this.timer = setInterval(play, pattern.period);
  }
  stop() { clearInterval(this.timer); this.timer = null; }
}

class CallManager extends EventTarget {
  constructor() {
    super();
    this.call = null;
    this.ringer = new Ringer();
    this.iceServers = null;
    this.statsTimer = null;
  }

  emit(type = 'change') { this.dispatchEvent(new CustomEvent(type, { detail: this.call })); }

  start() {}
  stop() { if (this.call) this.cleanup('hangup', false); }

  // --- user actions ----------------------------------------------------------------------------
  async startCall(peerId, kind) {
    if (this.call) { toast('You are already in a call.', 'error'); return; }
    if (!realtime.ready) { toast('Not connected. Try again when the connection is back.', 'error'); return; }
    this.call = this.newCall({ id: null, peerId, kind, direction: 'outgoing', state: 'inviting' });
    this.emit();
    try {
      await this.getMedia();
    } catch (e) {
      this.cleanup('failed', false);
      toast(mediaError(e), 'error');
      return;
    }
    if (!this.call) return; // hung up while the permission prompt was open
    this.ringer.start('outgoing');
    this.send({ type: 'call.invite', to: peerId, kind });
    const c = this.call;
    // The server answers an invite with call.created at once; silence means it cannot place calls.
    c.createdTimer = setTimeout(() => { if (this.call === c && !c.id) this.cleanup('failed'); }, 10_000);
  }

  async accept() {
    const c = this.call;
    if (!c || c.state !== 'incoming') return;
    this.ringer.stop();
    c.state = 'connecting';
    this.emit();
    try {
      await this.getMedia();
    } catch (e) {
      toast(mediaError(e), 'error');
      this.send({ type: 'call.decline', call_id: c.id });
      this.cleanup('failed');
      return;
    }
    if (this.call !== c) return;
    this.send({ type: 'call.accept', call_id: c.id });
    c.answeredAt = Date.now();
    this.setupMedia();
  }

  decline() {
    const c = this.call;
    if (!c) return;
    this.send({ type: 'call.decline', call_id: c.id });
    this.cleanup('declined');
  }

  hangup() {
    const c = this.call;
    if (!c) return;
    if (c.id) this.send({ type: 'call.hangup', call_id: c.id });
    else c.cancelWhenCreated = true; // invite not yet acknowledged: hang up as soon as we learn the id
    this.cleanup(c.state === 'active' ? 'hangup' : 'cancelled');
  }

  toggleMute() {
    const c = this.call;
    if (!c?.local) return;
    c.muted = !c.muted;
    for (const t of c.local.getAudioTracks()) t.enabled = !c.muted;
    this.emit();
  }

  toggleCamera() {
    const c = this.call;
    if (!c?.local) return;
    c.cameraOff = !c.cameraOff;
    // Disabled tracks send black frames: the SFU keeps its layers and re-enabling is instant.
    for (const t of c.local.getVideoTracks()) t.enabled = !c.cameraOff;
    this.emit();
  }

  async devices() {
    const list = await navigator.mediaDevices.enumerateDevices();
    return { audio: list.filter((d) => d.kind === 'audioinput'), video: list.filter((d) => d.kind === 'videoinput') };
  }

  /** Switch microphone or camera mid-call without renegotiating (replaceTrack). */
  async switchDevice(kind, deviceId) {
    const c = this.call;
    if (!c?.local) return;
    const constraints = kind === 'audio' ? { audio: { deviceId: { exact: deviceId }, echoCancellation: true, noiseSuppression: true } } : { video: { deviceId: { exact: deviceId }, width: { ideal: 1280 }, height: { ideal: 720 } } };
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    const track = kind === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
    const old = kind === 'audio' ? c.local.getAudioTracks()[0] : c.local.getVideoTracks()[0];
    track.enabled = kind === 'audio' ? !c.muted : !c.cameraOff;
    const sender = c.pub?.getSenders().find((s) => s.track && s.track.kind === track.kind);
    if (sender) await sender.replaceTrack(track);
    if (old) { c.local.removeTrack(old); old.stop(); }
    c.local.addTrack(track);
    c.deviceIds[kind] = deviceId;
    this.emit();
  }

  /** For tests and diagnostics: every stats entry of both peer connections. */
  async getStats() {
    const c = this.call;
    if (!c) return [];
    const out = [];
    for (const [name, pc] of [['publish', c.pub], ['subscribe', c.sub]]) {
      if (!pc) continue;
      const report = await pc.getStats();
      report.forEach((s) => out.push({ ...s, pc: name }));
    }
    return out;
  }

  // --- frames ----------------------------------------------------------------------------------
  onFrame(f) {
    const c = this.call;
    if (f.type === 'error' && c && c.direction === 'outgoing' && !c.id && (!f.ref || String(f.ref).startsWith('call'))) {
      // The invite was refused (calls unavailable, bad peer, blocked): end the ringing screen.
      toast(f.message || 'The call could not be placed.', 'error');
      this.cleanup('failed');
      return;
    }
    if (!f.type?.startsWith('call.') && f.type !== 'sfu.signal') return;
    switch (f.type) {
      case 'call.created':
        if (c && c.direction === 'outgoing' && !c.id) {
          c.id = f.call_id;
          if (c.cancelWhenCreated) { this.send({ type: 'call.hangup', call_id: f.call_id }); return; }
          this.emit();
        } else if (!c) {
          // We hung up before the server answered the invite.
          this.send({ type: 'call.hangup', call_id: f.call_id });
        }
        break;
      case 'call.ringing':
        if (c && (!f.call_id || f.call_id === c.id) && c.state === 'inviting') { c.state = 'ringing'; this.emit(); }
        break;
      case 'call.incoming':
        if (c) { this.send({ type: 'call.decline', call_id: f.call_id }); return; } // busy here
        this.call = this.newCall({ id: f.call_id, peerId: f.from, kind: f.kind === 'video' ? 'video' : 'audio', direction: 'incoming', state: 'incoming' });
        this.ringer.start('incoming');
        this.emit();
        this.dispatchEvent(new CustomEvent('incoming', { detail: this.call }));
        break;
      case 'call.accepted':
        // Accepted on another of this user's devices: stop ringing here.
        if (c && f.call_id === c.id && c.state === 'incoming') { this.cleanup('answered_elsewhere', false); break; }
        if (c && f.call_id === c.id && c.direction === 'outgoing' && !c.mediaReady) {
          this.ringer.stop();
          c.state = 'connecting';
          c.answeredAt = Date.now();
          this.emit();
          this.setupMedia();
        }
        break;
      case 'call.declined':
        if (c && f.call_id === c.id) this.cleanup('declined');
        break;
      case 'call.ended':
        if (c && f.call_id === c.id) this.cleanup(f.reason || 'hangup');
        break;
      case 'sfu.signal':
        // One at a time, in arrival order: SDP and candidates must not interleave across awaits.
        if (c && f.call_id === c.id) c.signalChain = c.signalChain.then(() => this.onSignal(f)).catch((e) => console.warn('sfu.signal', e));
        break;
      default:
        break;
    }
  }

  /** The chat socket came back: media paths may have changed, so restart ICE on both PCs. */
  onReconnect() {
    const c = this.call;
    if (c && c.pub) this.restartIce();
  }

  // --- internals -------------------------------------------------------------------------------
  newCall(fields) {
    return { muted: false, cameraOff: false, local: null, remote: new MediaStream(), pub: null, sub: null, quality: null, startedAt: Date.now(), answeredAt: null, connectedAt: null, deviceIds: {}, pendingCandidates: { publish: [], subscribe: [] }, signalChain: Promise.resolve(), mediaReady: null, ...fields };
  }

  send(frame) {
    if (!realtime.send(frame)) console.warn('call frame not sent (socket down)', frame.type);
  }

  async getMedia() {
    const c = this.call;
    if (c.local) return;
    const video = c.kind === 'video' ? { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: 'user' } : false;
    c.local = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }, video });
    if (this.call !== c) { c.local.getTracks().forEach((t) => t.stop()); return; }
    this.emit();
  }

  async loadIceServers() {
    try {
      const r = await api('GET', '/api/ice-servers');
      this.iceServers = r.ice_servers || [];
    } catch {
      this.iceServers = this.iceServers || [];
    }
    return this.iceServers;
  }

  /** Creates both peer connections once per call; concurrent callers share the same promise. */
  setupMedia() {
    const c = this.call;
    if (!c) return Promise.resolve();
    c.mediaReady = c.mediaReady || this.createPeerConnections(c);
    return c.mediaReady;
  }

  async createPeerConnections(c) {
    const iceServers = await this.loadIceServers();
    if (this.call !== c) return;
    const config = { iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' };
    c.pub = new RTCPeerConnection(config);
    c.sub = new RTCPeerConnection(config);
    for (const [name, pc] of [['publish', c.pub], ['subscribe', c.sub]]) {
      pc.onicecandidate = (e) => this.send({ type: 'sfu.signal', call_id: c.id, pc: name, candidate: e.candidate ? e.candidate.toJSON() : null });
      pc.onconnectionstatechange = () => this.onPcState(c, name, pc);
    }
    c.sub.ontrack = (e) => {
      c.remote.addTrack(e.track);
      e.track.onended = () => { c.remote.removeTrack(e.track); this.emit('tracks'); };
      this.emit('tracks');
    };
    for (const track of c.local.getAudioTracks()) c.pub.addTransceiver(track, { direction: 'sendonly', streams: [c.local] });
    for (const track of c.local.getVideoTracks()) {
      c.pub.addTransceiver(track, { direction: 'sendonly', streams: [c.local], sendEncodings: SIMULCAST });
    }
    await this.offerPublish(false);
    this.startStats();
  }

  async offerPublish(iceRestart) {
    const c = this.call;
    if (!c?.pub) return;
    const offer = await c.pub.createOffer(iceRestart ? { iceRestart: true } : undefined);
    await c.pub.setLocalDescription(offer);
    // After a reset, the new connections' first offer says so: the server replaces the old session.
    const fresh = c.fresh ? { reset: true } : {};
    this.send({ type: 'sfu.signal', call_id: c.id, pc: 'publish', sdp: { type: offer.type, sdp: offer.sdp }, ...fresh });
  }

  async onSignal(f) {
    const c = this.call;
    if (!c || c.id !== f.call_id) return;
    await this.setupMedia(); // a subscribe offer may arrive before call.accepted settles
    const pc = f.pc === 'subscribe' ? c.sub : c.pub;
    if (f.reset) {
      // Resets the server sent before it saw our fresh offer are already being handled.
      if (!c.fresh) await this.resetMedia(c);
      return;
    }
    if (f.layers_needed) {
      await this.applyLayers(c, f.layers_needed);
      return;
    }
    if (!pc) return;
    if (f.sdp) {
      if (f.pc === 'subscribe' && f.sdp.type === 'offer') {
        await pc.setRemoteDescription(f.sdp);
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        this.send({ type: 'sfu.signal', call_id: c.id, pc: 'subscribe', sdp: { type: answer.type, sdp: answer.sdp } });
      } else if (f.pc === 'publish' && f.sdp.type === 'answer') {
        c.fresh = false;
        if (pc.signalingState === 'have-local-offer') await pc.setRemoteDescription(f.sdp);
        // We are in the SFU's room now (again, after a reset): tell it the size we show.
        c.joined = true;
        this.sendViewLayer(c);
      }
      // Candidates that raced ahead of the description can be applied now.
      const queued = c.pendingCandidates[f.pc] || [];
      c.pendingCandidates[f.pc] = [];
      for (const cand of queued) await addCandidate(pc, cand);
    } else if ('candidate' in f) {
      if (!pc.remoteDescription) c.pendingCandidates[f.pc].push(f.candidate);
      else await addCandidate(pc, f.candidate);
    }
  }

  // Layers nobody receives stop being encoded and sent (uplink and camera CPU); the SFU asks
  // for them again as soon as a receiver needs them.
  async applyLayers(c, { track, layers }) {
    const sender = c.pub?.getSenders().find((s) => s.track && s.track.id === track);
    const params = sender?.getParameters();
    if (!params?.encodings?.length || !Array.isArray(layers)) return;
    let changed = false;
    for (const e of params.encodings) {
      const want = layers[RID_LAYER[e.rid]];
      if (typeof want !== 'boolean' || e.active === want) continue;
      e.active = want;
      changed = true;
    }
    if (changed) await sender.setParameters(params);
  }

  /** The peer's video is shown `px` device pixels wide: no larger layer than that is worth receiving. */
  setViewWidth(px) {
    const c = this.call;
    if (!c) return;
    c.viewLayer = px > 640 ? 2 : px > 320 ? 1 : 0;
    this.sendViewLayer(c);
  }

  sendViewLayer(c) {
    if (!c.joined || c.viewLayer === undefined || c.viewLayer === c.sentLayer) return;
    c.sentLayer = c.viewLayer;
    this.send({ type: 'sfu.signal', call_id: c.id, pc: 'subscribe', max_layer: c.viewLayer });
  }

  /** The publish video sender's simulcast encodings, as [{rid, active}] (test hook). */
  sendEncodings() {
    const sender = this.call?.pub?.getSenders().find((s) => s.track?.kind === 'video');
    return (sender?.getParameters().encodings || []).map((e) => ({ rid: e.rid, active: e.active }));
  }

  onPcState(c, name, pc) {
    if (this.call !== c) return;
    const st = pc.connectionState;
    if (st === 'connected' && c.state !== 'active') {
      c.state = 'active';
      c.connectedAt = c.connectedAt || Date.now();
      this.emit();
    }
    // The socket may have lost its network too: find out now, not at the next heartbeat.
    if (st === 'failed' || st === 'disconnected') realtime.probe();
    if (st === 'failed') this.restartIce();
    if (st === 'disconnected') {
      clearTimeout(c.graceTimer);
      c.graceTimer = setTimeout(() => { if (this.call === c && pc.connectionState === 'disconnected') this.restartIce(); }, DISCONNECT_GRACE_MS);
    }
    c.pcStates = { publish: c.pub?.connectionState, subscribe: c.sub?.connectionState };
    this.emit('quality');
  }

  /**
   * The SFU dropped this member's media session: start over with new peer connections (the
   * camera and microphone stay on). The new publish offer joins the room afresh.
   */
  async resetMedia(c) {
    for (const pc of [c.pub, c.sub]) {
      if (!pc) continue;
      pc.onconnectionstatechange = null;
      pc.onicecandidate = null;
      pc.ontrack = null;
      pc.close();
    }
    for (const t of c.remote.getTracks()) c.remote.removeTrack(t);
    this.emit('tracks');
    clearTimeout(c.graceTimer);
    c.pub = c.sub = null;
    c.fresh = true;
    c.joined = false;
    c.sentLayer = undefined;
    c.pendingCandidates = { publish: [], subscribe: [] };
    c.mediaReady = this.createPeerConnections(c);
    await c.mediaReady;
  }

  restartIce() {
    const c = this.call;
    if (!c?.pub || !c.id) return;
    if (c.restarting && Date.now() - c.restarting < 2000) return; // failed + reconnect can both fire
    c.restarting = Date.now();
    this.offerPublish(true).catch((e) => console.warn('ice restart', e));
    this.send({ type: 'sfu.signal', call_id: c.id, pc: 'subscribe', restart: true });
  }

  startStats() {
    clearInterval(this.statsTimer);
    let prev = null;
    this.statsTimer = setInterval(async () => {
      const c = this.call;
      if (!c) return;
      try {
        const stats = await this.getStats();
        const q = summarize(stats, prev);
        prev = q.raw;
        c.quality = q.level;
        c.qualityInfo = q;
        this.emit('quality');
      } catch { /* a closed PC while polling */ }
    }, STATS_INTERVAL_MS);
  }

  cleanup(reason, notify = true) {
    const c = this.call;
    if (!c) return;
    this.ringer.stop();
    clearInterval(this.statsTimer);
    clearTimeout(c.graceTimer);
    clearTimeout(c.createdTimer);
    c.local?.getTracks().forEach((t) => t.stop());
    c.pub?.close();
    c.sub?.close();
    c.state = 'ended';
    c.endReason = reason;
    c.endedAt = Date.now();
    this.call = null;
    this.dispatchEvent(new CustomEvent('ended', { detail: c }));
    this.emit();
    if (notify && c.direction === 'incoming' && !c.answeredAt && (reason === 'timeout' || reason === 'cancelled')) {
      this.dispatchEvent(new CustomEvent('missed', { detail: c }));
    }
  }
}

async function addCandidate(pc, cand) {
  try {
    await pc.addIceCandidate(cand === null ? undefined : cand); // null = end of candidates
  } catch (e) {
    console.warn('addIceCandidate', e);
  }
}

/** Connection quality from RTT, loss and jitter: 'good' | 'fair' | 'poor'. */
function summarize(stats, prev) {
  let rtt = null, lost = 0, received = 0, jitter = 0;
  for (const s of stats) {
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && typeof s.currentRoundTripTime === 'number') rtt = Math.max(rtt ?? 0, s.currentRoundTripTime);
    if (s.type === 'inbound-rtp') {
      lost += s.packetsLost || 0;
      received += s.packetsReceived || 0;
      jitter = Math.max(jitter, s.jitter || 0);
    }
  }
  const dLost = lost - (prev?.lost || 0);
  const dRecv = received - (prev?.received || 0);
  const loss = dRecv + dLost > 0 ? dLost / (dRecv + dLost) : 0;
  let level = 'good';
  if ((rtt ?? 0) > 0.4 || loss > 0.08 || jitter > 0.1) level = 'poor';
  else if ((rtt ?? 0) > 0.15 || loss > 0.02 || jitter > 0.03) level = 'fair';
  if (rtt === null && received === 0) level = 'connecting';
  return { level, rtt, loss, jitter, raw: { lost, received } };
}

function mediaError(e) {
  if (e?.name === 'NotAllowedError') return 'Allow access to your microphone and camera to make calls.';
  if (e?.name === 'NotFoundError') return 'No microphone or camera was found.';
  return 'Could not start your microphone or camera.';
}

export const calls = new CallManager();

// Test and diagnostics hook (API.md "UI test hooks").
window.mesconCall = {
  getStats: () => calls.getStats(),
  sendEncodings: () => calls.sendEncodings(),
  get state() { return calls.call?.state || null; },
};
