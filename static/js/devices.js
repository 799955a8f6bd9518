// DevicePreview: the pre-join device check — camera preview, microphone level meter
// (WebAudio AnalyserNode) and camera/microphone pickers (enumerateDevices).

import { Emitter } from "./util.js";

const VIDEO_CONSTRAINTS = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24, max: 30 } };

export class DevicePreview extends Emitter {
  /**
   * @param videoEl   <video> for the camera preview
   * @param meterEl   element whose --level (0..1) and data-level show the microphone level
   * Events: devices({cameras, microphones}), error(err), level(value), stream(stream)
   */
  constructor({ videoEl, meterEl }) {
    super();
    this.videoEl = videoEl;
    this.meterEl = meterEl;
    this.stream = null;
    this.cameraId = null;
    this.micId = null;
    this._audioContext = null;
    this._meterTimer = null;
    this._resumeOnGesture = () => this._audioContext?.resume();
    document.addEventListener("pointerdown", this._resumeOnGesture);
    document.addEventListener("keydown", this._resumeOnGesture);
  }

  /** Open camera and microphone (the chosen ones if set); falls back to whichever works. */
  async start() {
    this._stopTracks();
    const audio = this.micId ? { deviceId: { exact: this.micId } } : true;
    const video = this.cameraId ? { ...VIDEO_CONSTRAINTS, deviceId: { exact: this.cameraId } } : VIDEO_CONSTRAINTS;
    let stream = null;
    let lastError = null;
    for (const constraints of [{ audio, video }, { audio }, { video }]) {
      try {
        stream = await navigator.mediaDevices.getUserMedia(constraints);
        break;
      } catch (err) {
        lastError = err;
      }
    }
    this.stream = stream;
    if (stream) {
      this.cameraId = stream.getVideoTracks()[0]?.getSettings().deviceId || this.cameraId;
      this.micId = stream.getAudioTracks()[0]?.getSettings().deviceId || this.micId;
      this.videoEl.srcObject = stream.getVideoTracks().length ? new MediaStream(stream.getVideoTracks()) : null;
      this.videoEl.play?.().catch(() => {});
      this._startMeter(stream);
    } else if (lastError) {
      this.emit("error", lastError);
    }
    await this.refreshDevices();
    this.emit("stream", stream);
    return stream;
  }

  /** List cameras and microphones (labels appear once permission was given). */
  async refreshDevices() {
    let devices = [];
    try {
      devices = await navigator.mediaDevices.enumerateDevices();
    } catch {
      devices = [];
    }
    const cameras = devices.filter((d) => d.kind === "videoinput");
    const microphones = devices.filter((d) => d.kind === "audioinput");
    this.emit("devices", { cameras, microphones, cameraId: this.cameraId, micId: this.micId });
    return { cameras, microphones };
  }

  /** Switch to another camera or microphone. */
  async choose({ cameraId, micId }) {
    if (cameraId !== undefined) this.cameraId = cameraId || null;
    if (micId !== undefined) this.micId = micId || null;
    return this.start();
  }

  /** Hand the stream over to the room (it keeps running) and stop the preview's meter. */
  take() {
    const stream = this.stream;
    this.stream = null;
    this._stopMeter();
    this.videoEl.srcObject = null;
    this._detach();
    return stream;
  }

  /** Stop the preview and its devices. */
  stop() {
    this._stopTracks();
    this._detach();
  }

  _detach() {
    document.removeEventListener("pointerdown", this._resumeOnGesture);
    document.removeEventListener("keydown", this._resumeOnGesture);
  }

  _stopTracks() {
    this._stopMeter();
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.stream = null;
  }

  _startMeter(stream) {
    this._stopMeter();
    if (!stream.getAudioTracks().length || typeof AudioContext === "undefined") return;
    const context = new AudioContext();
    this._audioContext = context;
    const source = context.createMediaStreamSource(stream);
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    let smoothed = 0;
    // A timer rather than requestAnimationFrame, so the meter also runs in background tabs.
    this._meterTimer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const v of samples) sum += v * v;
      const rms = Math.sqrt(sum / samples.length);
      // Map about -60..0 dBFS to 0..1.
      const level = Math.max(0, Math.min(1, (20 * Math.log10(rms + 1e-9) + 60) / 60));
      smoothed = Math.max(level, smoothed * 0.85);
      this.meterEl.style.setProperty("--level", smoothed.toFixed(3));
      this.meterEl.dataset.level = smoothed.toFixed(2);
      this.emit("level", smoothed);
    }, 60);
  }

  _stopMeter() {
    clearInterval(this._meterTimer);
    this._meterTimer = null;
    if (this._audioContext) {
      this._audioContext.close().catch(() => {});
      this._audioContext = null;
    }
    this.meterEl.style.setProperty("--level", "0");
    this.meterEl.dataset.level = "0";
  }
}
